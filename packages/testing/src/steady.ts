/**
 * `read`'s value once two reads `apartMs` apart agree (it stopped moving); fails past
 * `timeoutMs`.
 */
export async function steady(
  read: () => Promise<number> | number,
  apartMs = 300,
  timeoutMs = 5_000,
): Promise<number> {
  let last = await read();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, apartMs));
    const now = await read();
    if (now === last) return now;
    if (Date.now() > deadline) throw new Error("the value did not settle in time");
    last = now;
  }
}
