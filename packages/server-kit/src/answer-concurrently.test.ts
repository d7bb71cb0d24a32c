import { answerConcurrently } from "./answer-concurrently";
import { Channel } from "./channel";

/** Collects a stream's answers, and how it ended. */
async function drain<T>(stream: AsyncIterable<T>): Promise<{ answers: T[]; error?: unknown }> {
  const answers: T[] = [];
  try {
    for await (const a of stream) answers.push(a);
    return { answers };
  } catch (error) {
    return { answers, error };
  }
}

const tick = () => new Promise((r) => setTimeout(r, 10));

describe("answerConcurrently", () => {
  it("answers every message once and ends when the caller half-closes", async () => {
    const requests = new Channel<number>();
    for (const n of [1, 2, 3]) requests.push(n);
    requests.close();
    const out = await drain(
      answerConcurrently(
        requests,
        async (n) => (n === 2 ? Promise.reject(new Error("bad")) : n * 10),
        (n) => -n,
      ),
    );
    expect(out.answers.sort((a, b) => a - b)).toEqual([-2, 10, 30]);
    expect(out.error).toBeUndefined();
  });

  it("stops reading when told to: what was read is answered, then the stream fails", async () => {
    const requests = new Channel<number>();
    const stop = new AbortController();
    const handled: number[] = [];
    const release: (() => void)[] = [];
    const stream = answerConcurrently(
      requests,
      async (n) => {
        handled.push(n);
        await new Promise<void>((r) => release.push(r));
        return n;
      },
      (n) => -n,
      { stopReading: { signal: stop.signal, error: () => new Error("draining") } },
    );
    const done = drain(stream);
    requests.push(1);
    requests.push(2);
    await tick();
    stop.abort();
    requests.push(3); // sent after the stop: never read
    await tick();
    expect(handled).toEqual([1, 2]);
    for (const r of release) r();
    const out = await done;
    expect(out.answers.sort()).toEqual([1, 2]);
    expect(out.error).toEqual(new Error("draining"));
    expect(handled).toEqual([1, 2]);
  });

  it("a request stream that breaks ends the call once what was read before is answered", async () => {
    const release: (() => void)[] = [];
    async function* requests() {
      yield 1;
      await tick();
      throw new Error("undecodable");
    }
    const stream = answerConcurrently(
      requests(),
      async (n: number) => {
        await new Promise<void>((r) => release.push(r));
        return n * 10; // stored: its answer says so
      },
      (n) => -n,
    );
    const done = drain(stream);
    await tick();
    await tick(); // the break has come while 1 is still being handled
    for (const r of release) r();
    const out = await done;
    expect(out.answers).toEqual([10]);
    expect(out.error).toEqual(new Error("undecodable"));
  });

  it("ends at once, failing, when stopped with nothing in flight", async () => {
    const requests = new Channel<number>();
    const stop = new AbortController();
    stop.abort();
    const out = await drain(
      answerConcurrently(
        requests,
        async (n) => n,
        (n) => -n,
        { stopReading: { signal: stop.signal, error: () => new Error("draining") } },
      ),
    );
    expect(out).toEqual({ answers: [], error: new Error("draining") });
  });

  it("reads no further while its answers are not taken, and stops reading when the call ends", async () => {
    const requests = new Channel<number>();
    for (let n = 0; n < 100; n++) requests.push(n);
    let handled = 0;
    const stream = answerConcurrently(
      requests,
      async (n) => {
        handled++;
        return n;
      },
      (n) => -n,
      { inFlight: 4 },
    );
    const it = stream[Symbol.asyncIterator]();
    await it.next(); // one answer taken, and held by its reader
    await tick();
    expect(handled).toBe(4); // the caller sends on; its answers are not read: no more is read
    await it.next();
    await tick();
    expect(handled).toBe(5);
    await it.return(undefined); // the call ends with answers untaken: reading stops
    await tick();
    expect(handled).toBe(5);
  });

  it("tells of every answer the call ended without: taken by nobody, or still being handled", async () => {
    const requests = new Channel<number>();
    for (let n = 1; n <= 5; n++) requests.push(n);
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const unsent: number[] = [];
    const stream = answerConcurrently(
      requests,
      async (n) => {
        if (n === 5) await slow; // still being handled when the call ends
        return n;
      },
      (n) => -n,
      { inFlight: 8, onUnsent: (n) => unsent.push(n) },
    );
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(1); // sent
    await tick();
    requests.close(); // the call ends: its requests end, and 2, 3 and 4, answered, were never taken
    await it.return(undefined);
    expect(unsent.sort()).toEqual([2, 3, 4]);
    release();
    await tick();
    expect(unsent.sort()).toEqual([2, 3, 4, 5]);
  });
});
