import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32

/**
 * Task ids: 26 characters, ULID layout (48-bit ms time, then 80 random bits), so ids
 * sort by creation time. Within one millisecond the random part is incremented, so
 * ids made by one generator also sort in creation order.
 */
export class TaskIdGenerator {
  private lastMs = -1;
  private readonly random = new Uint8Array(10);

  next(nowMs: number): string {
    if (nowMs <= this.lastMs) {
      this.increment();
      nowMs = this.lastMs;
    } else {
      this.lastMs = nowMs;
      this.random.set(randomBytes(10));
    }
    let out = "";
    let t = nowMs;
    const time: string[] = [];
    for (let i = 0; i < 10; i++) {
      time.push(ALPHABET[t % 32]!);
      t = Math.floor(t / 32);
    }
    out = time.reverse().join("");
    // 80 random bits → 16 base32 characters, 5 bits at a time
    let acc = 0;
    let bits = 0;
    for (const byte of this.random) {
      acc = (acc << 8) | byte;
      bits += 8;
      while (bits >= 5) {
        out += ALPHABET[(acc >> (bits - 5)) & 31];
        bits -= 5;
      }
      acc &= (1 << bits) - 1;
    }
    return out;
  }

  private increment(): void {
    for (let i = this.random.length - 1; i >= 0; i--) {
      if (this.random[i]! < 255) {
        this.random[i]! += 1;
        return;
      }
      this.random[i] = 0;
    }
  }
}

export const TASK_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
