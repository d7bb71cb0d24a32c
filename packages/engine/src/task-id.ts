import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32
const CODES = Array.from(ALPHABET, (c) => c.charCodeAt(0));

/** Characters in a task id. */
export const ID_WIDTH = 26;
/** Of them, the creation time's. */
const TIME_WIDTH = 10;

/**
 * Task ids: 26 characters, ULID layout (48-bit ms time, then 80 random bits), so ids
 * sort by creation time. Within one millisecond the random part is incremented, so
 * ids made by one generator also sort in creation order.
 *
 * Every enqueued task takes one, so an id is spelled in one reused buffer (the time
 * part only when the millisecond changes) and read out as a single string.
 */
export class TaskIdGenerator {
  private lastMs = -1;
  private readonly random = new Uint8Array(10);
  private readonly text = Buffer.alloc(ID_WIDTH);

  next(nowMs: number): string {
    if (nowMs <= this.lastMs) {
      this.increment();
    } else {
      this.lastMs = nowMs;
      randomFillSync(this.random);
      let t = nowMs;
      for (let i = TIME_WIDTH - 1; i >= 0; i--) {
        this.text[i] = CODES[t % 32]!;
        t = Math.floor(t / 32);
      }
    }
    // 80 random bits → 16 base32 characters, 5 bits at a time
    let acc = 0;
    let bits = 0;
    let at = TIME_WIDTH;
    for (const byte of this.random) {
      acc = (acc << 8) | byte;
      bits += 8;
      while (bits >= 5) {
        this.text[at++] = CODES[(acc >> (bits - 5)) & 31]!;
        bits -= 5;
      }
      acc &= (1 << bits) - 1;
    }
    return this.text.toString("latin1");
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

/** The creation time a task id carries (its first TIME_WIDTH characters, ULID layout). */
export function idTime(id: string): number {
  let t = 0;
  for (let i = 0; i < TIME_WIDTH; i++) t = t * 32 + ALPHABET.indexOf(id[i]!);
  return t;
}
