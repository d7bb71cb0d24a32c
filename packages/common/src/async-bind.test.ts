import { AsyncResource, executionAsyncId, triggerAsyncId } from "node:async_hooks";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { installLeanAsyncBind, leanBind } from "./async-bind";

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

  it("keeps the function's length and names the resource, as Node's bind does", () => {
    const resource = new AsyncResource("test");
    const bound = lean.call(resource, (_a: number, _b: number, _c: number) => undefined);
    expect(bound.length).toBe(3);
    expect((bound as unknown as { asyncResource: unknown }).asyncResource).toBe(resource);
  });

  it("refuses what is not a function", () => {
    const resource = new AsyncResource("test");
    expect(() => Reflect.apply(leanBind, resource, [42])).toThrow(TypeError);
  });
});

describe("installLeanAsyncBind", () => {
  const original = Object.getOwnPropertyDescriptor(AsyncResource.prototype, "bind");
  afterAll(() => {
    if (original) Object.defineProperty(AsyncResource.prototype, "bind", original);
  });

  it("puts leanBind in place of a bind that makes deprecated accessors, once", () => {
    const accessors = makesAccessors(AsyncResource.prototype.bind);
    expect(installLeanAsyncBind()).toBe(accessors);
    if (!accessors) return; // a Node without the accessor is left as it is
    expect(AsyncResource.prototype.bind).toBe(leanBind);
    expect(installLeanAsyncBind()).toBe(true);
    // AsyncResource.bind (static) goes through the prototype's bind.
    const bound = AsyncResource.bind(() => executionAsyncId());
    expect(Object.getOwnPropertyDescriptor(bound, "asyncResource")?.get).toBeUndefined();
  });
});

const makesAccessors = (bind: AsyncResource["bind"]) =>
  Object.getOwnPropertyDescriptor(
    bind.call(new AsyncResource("probe"), () => undefined),
    "asyncResource",
  )?.get !== undefined;

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
 * promotes whatever survived the first), with Node's bind and then with leanBind.
 */
describe("HTTP/2 client requests with leanBind", () => {
  const original = Object.getOwnPropertyDescriptor(AsyncResource.prototype, "bind");
  let server: ChildProcess;
  let session: http2.ClientHttp2Session;
  let minorGc: () => void;

  beforeAll(async () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as (o: object) => void;
    minorGc = () => gc({ type: "minor", execution: "sync" });
    // The server runs in a process of its own, so only the client's objects are measured.
    server = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "inherit"] });
    const [port] = (await once(server.stdout!, "data")) as [Buffer];
    session = http2.connect(`http://127.0.0.1:${port.toString().trim()}`);
    await once(session, "connect");
  });

  afterAll(async () => {
    if (original) Object.defineProperty(AsyncResource.prototype, "bind", original);
    session.close();
    server.kill();
    if (server.exitCode === null) await once(server, "exit");
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

  /** Old-generation bytes kept per request of `n`, all finished, after two young GCs. */
  async function keptPerRequest(bind: AsyncResource["bind"], n: number): Promise<number> {
    Object.defineProperty(AsyncResource.prototype, "bind", { ...original, value: bind });
    for (let i = 0; i < 50; i++) await request(); // warm, and out of the measure
    minorGc();
    minorGc();
    const before = oldSpace();
    for (let i = 0; i < n; i++) await request();
    await new Promise((resolve) => setTimeout(resolve, 10));
    minorGc();
    minorGc();
    return (oldSpace() - before) / n;
  }

  it("leave for the old generation a fraction of what Node's bind makes them leave", async () => {
    const nodeBind = original?.value as AsyncResource["bind"];
    const withNode: number[] = [];
    const withLean: number[] = [];
    for (let round = 0; round < 3; round++) {
      withLean.push(await keptPerRequest(lean, 300));
      withNode.push(await keptPerRequest(nodeBind, 300));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1]!;
    // Node 20's bind keeps all of every request (about 4.5 KB here); leanBind next to nothing.
    if (makesAccessors(nodeBind)) expect(median(withLean)).toBeLessThan(median(withNode) / 4);
    else expect(median(withLean)).toBeLessThan(median(withNode) * 2);
  });
});
