import {
  AsyncLocalStorage,
  AsyncResource,
  executionAsyncId,
  triggerAsyncId,
} from "node:async_hooks";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as v8 from "node:v8";
import { exposeGc } from "@codeq/testing";
import { bindHasPerCallPrototype, installLeanAsyncBind, leanBind } from "./async-bind";
import { observeGcPauses } from "./gc-pauses";

/** `leanBind` as the method it replaces. */
const lean = leanBind as AsyncResource["bind"];

describe("leanBind", () => {
  it("runs the function in the resource's async scope, with the caller's this and arguments", () => {
    const resource = new AsyncResource("test");
    const seen: unknown[] = [];
    const bound = lean.call(resource, function (this: unknown, a: number, b: number) {
      seen.push(this, executionAsyncId(), triggerAsyncId());
      return a + b;
    });
    const self = { bound };
    expect(self.bound(2, 3)).toBe(5);
    expect(seen).toEqual([self, resource.asyncId(), resource.triggerAsyncId()]);
    expect(executionAsyncId()).not.toBe(resource.asyncId());
  });

  it("binds thisArg when given", () => {
    const resource = new AsyncResource("test");
    const thisArg = { name: "bound" };
    const bound = Reflect.apply(leanBind, resource, [
      function (this: unknown) {
        return [this, executionAsyncId()];
      },
      thisArg,
    ]) as (this: unknown) => unknown[];
    expect(bound.call({ name: "caller" })).toEqual([thisArg, resource.asyncId()]);
  });

  it("keeps the function's length and Node's name, and points at the resource", () => {
    const resource = new AsyncResource("test");
    const bound = lean.call(resource, (_a: number, _b: number, _c: number) => undefined);
    expect(bound.length).toBe(3);
    expect(bound.name).toBe("bound");
    expect((bound as unknown as { asyncResource: unknown }).asyncResource).toBe(resource);
  });

  it("carries AsyncLocalStorage's store of where it was bound", () => {
    const storage = new AsyncLocalStorage<string>();
    const bound = storage.run("at bind", () =>
      lean.call(new AsyncResource("test"), () => storage.getStore()),
    );
    expect(storage.run("at call", bound)).toBe("at bind");
  });

  it("refuses what is not a function as Node does", () => {
    const resource = new AsyncResource("test");
    expect(() => Reflect.apply(leanBind, resource, [42])).toThrow(
      expect.objectContaining({ name: "TypeError", code: "ERR_INVALID_ARG_TYPE" }),
    );
  });
});

describe("installLeanAsyncBind", () => {
  const original = Object.getOwnPropertyDescriptor(AsyncResource.prototype, "bind");
  afterAll(() => {
    if (original) Object.defineProperty(AsyncResource.prototype, "bind", original);
  });

  it("puts leanBind in place of a bind with the defect, once", () => {
    const defect = bindHasPerCallPrototype(AsyncResource.prototype.bind);
    expect(installLeanAsyncBind()).toBe(defect);
    if (!defect) return; // a Node without it is left as it is
    expect(AsyncResource.prototype.bind).toBe(leanBind);
    expect(installLeanAsyncBind()).toBe(true);
    // AsyncResource.bind (static) goes through the prototype's bind.
    const bound = AsyncResource.bind(() => executionAsyncId());
    expect(Object.getOwnPropertyDescriptor(bound, "asyncResource")?.get).toBeUndefined();
  });
});

/** An HTTP/2 server answering every request with 64 bytes; prints its port. */
const SERVER = `
const server = require("node:http2").createServer();
server.on("stream", (stream) => {
  stream.resume();
  stream.on("end", () => { stream.respond({ ":status": 200 }); stream.end(Buffer.alloc(64)); });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`;

/**
 * What the change is for: a finished HTTP/2 client request's objects are garbage a
 * young-generation GC can collect. Measured as the old generation's growth over
 * requests that all finished before two forced young-generation GCs (the second
 * promotes whatever survived the first), with Node's bind and with leanBind in turns.
 * A round in which a full GC ran (it shrinks the old generation) is run again.
 */
describe("HTTP/2 client requests with leanBind", () => {
  const original = Object.getOwnPropertyDescriptor(AsyncResource.prototype, "bind");
  let server: ChildProcess;
  let session: http2.ClientHttp2Session;
  let gc: ReturnType<typeof exposeGc>;
  const minorGc = () => gc({ type: "minor", execution: "sync" });
  /** When full GCs were reported (performance.now(); a little after they ran). */
  const fullGcs: number[] = [];
  let stopObserving: () => void = () => undefined;

  beforeAll(async () => {
    gc = exposeGc();
    stopObserving = observeGcPauses((kind) => {
      if (kind === "major") fullGcs.push(performance.now());
    });
    // The server runs in a process of its own, so only the client's objects are measured.
    server = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "inherit"] });
    const [port] = (await once(server.stdout!, "data")) as [Buffer];
    session = http2.connect(`http://127.0.0.1:${port.toString().trim()}`);
    await once(session, "connect");
  });

  afterAll(async () => {
    if (original) Object.defineProperty(AsyncResource.prototype, "bind", original);
    stopObserving();
    session?.close();
    server?.kill();
    if (server?.exitCode === null) await once(server, "exit");
  });

  const body = Buffer.alloc(1000);
  const request = () =>
    new Promise<void>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": "/" });
      stream.on("error", reject);
      stream.resume();
      stream.on("close", resolve);
      stream.end(body);
    });
  const oldSpace = () =>
    v8.getHeapSpaceStatistics().find((s) => s.space_name === "old_space")?.space_used_size ?? 0;

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Old-generation bytes kept per request of `n`, all finished, after two young GCs. */
  async function keptPerRequest(bind: AsyncResource["bind"], n: number): Promise<number> {
    Object.defineProperty(AsyncResource.prototype, "bind", { ...original, value: bind });
    for (let attempt = 0; ; attempt++) {
      gc(); // start from an old generation with nothing dead in it
      for (let i = 0; i < 50; i++) await request(); // warm, and out of the measure
      minorGc();
      minorGc();
      const start = performance.now();
      const before = oldSpace();
      for (let i = 0; i < n; i++) await request();
      await sleep(10);
      minorGc();
      minorGc();
      const kept = (oldSpace() - before) / n;
      await sleep(20); // GC entries reach the observer asynchronously
      if (attempt === 2 || !fullGcs.some((t) => t >= start)) return kept;
    }
  }

  it("leave for the old generation a fraction of what Node's bind makes them leave", async () => {
    const nodeBind = original?.value as AsyncResource["bind"];
    const withNode: number[] = [];
    const withLean: number[] = [];
    for (let round = 0; round < 3; round++) {
      withLean.push(await keptPerRequest(lean, 1000));
      withNode.push(await keptPerRequest(nodeBind, 1000));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1]!;
    // Node 20's bind keeps all of every request (about 4.5 KB here), leanBind about a
    // tenth of that (http2's own bookkeeping).
    if (bindHasPerCallPrototype(nodeBind))
      expect(median(withLean)).toBeLessThan(median(withNode) / 4);
    else expect(median(withLean)).toBeLessThan(median(withNode) * 2);
  });
});
