import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ShardMapError } from "./errors";
import { loadStaticSupplier } from "./static-yaml-supplier";

describe("loadStaticSupplier", () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-shardmap-"));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };
  /** The ShardMapError a bad file throws. */
  const failure = (p: string): ShardMapError => {
    try {
      loadStaticSupplier(p);
    } catch (err) {
      expect(err).toBeInstanceOf(ShardMapError);
      return err as ShardMapError;
    }
    throw new Error(`${p} was accepted`);
  };

  it("routes by a valid file, with the documented defaults filled in", () => {
    const p = file(
      "good.yaml",
      `# shards of the EU cluster
shards:
  a: { endpoint: "shard-a:7301" }
  b:
    endpoint: shard-b:7301
    state: draining
  c: { endpoint: "10.0.0.3:7301", state: active }
defaultShard: a
commands:
  SEND_EMAIL: b
  RESIZE_IMAGE: c
tenants:
  SEND_EMAIL/acme: c
`,
    );
    const supplier = loadStaticSupplier(p);
    expect(supplier.file).toBe(p);
    expect(supplier.map).toMatchObject({
      version: 0,
      migrations: [],
      shards: { a: { endpoint: "shard-a:7301", state: "active" }, b: { state: "draining" } },
    });
    expect(supplier.currentShard("SEND_EMAIL", "globex")).toBe("b");
    expect(supplier.currentShard("SEND_EMAIL", "acme")).toBe("c");
    expect(supplier.currentShard("RESIZE_IMAGE", "acme")).toBe("c");
    expect(supplier.currentShard("OTHER", "acme")).toBe("a");
    expect(supplier.queueShards("SEND_EMAIL", "globex")).toEqual(["b"]);
  });

  it("accepts a file with only shards and a default (empty sections too)", () => {
    const p = file(
      "minimal.yaml",
      "shards:\n  a: { endpoint: 'localhost:7301' }\ndefaultShard: a\ncommands:\n",
    );
    expect(loadStaticSupplier(p).queueShards("X", "y")).toEqual(["a"]);
  });

  it("reads every value as written: ids that look like numbers stay as they are", () => {
    const p = file(
      "numbers.yaml",
      "shards:\n  007: { endpoint: 'h:1' }\n  1e3: { endpoint: 'h:2' }\ndefaultShard: 007\ncommands:\n  X: 1e3\ntenants: ~\n",
    );
    const supplier = loadStaticSupplier(p);
    expect(Object.keys(supplier.map.shards).sort()).toEqual(["007", "1e3"]);
    expect(supplier.map.defaultShard).toBe("007");
    expect(supplier.queueShards("X", "y")).toEqual(["1e3"]);
    expect(supplier.queueShards("Z", "y")).toEqual(["007"]);
  });

  it("lists every problem of a bad file, with its path", () => {
    const p = file(
      "bad.yaml",
      `shards:
  Shard_A: { endpoint: "a:7301" }
  b: { endpoint: "no-port" }
commands:
  SEND_EMAIL: x
  "SEND EMAIL": b
tenants:
  SEND_EMAIL/acme: y
  globex: b
version: 3
`,
    );
    const err = failure(p);
    expect(err.problems).toEqual([
      "version: not allowed in a static map (it has no versions or migrations)",
      `shards.Shard_A: shard id "Shard_A" must match ^[a-z0-9][a-z0-9-]{0,62}$`,
      `shards.b.endpoint: endpoint "no-port" must be host:port (port 1..65535)`,
      "defaultShard: is required",
      `commands["SEND EMAIL"]: command "SEND EMAIL" must match ^[A-Za-z0-9_.-]{1,128}$`,
      `tenants.globex: tenant override key "globex" must be <command>/<tenant>, each matching ^[A-Za-z0-9_.-]{1,128}$`,
      `commands.SEND_EMAIL: shard "x" is not in shards`,
      `tenants["SEND_EMAIL/acme"]: shard "y" is not in shards`,
    ]);
    expect(err.message.split("\n")[0]).toBe(`invalid static shard map ${p}:`);
    for (const problem of err.problems) expect(err.message).toContain(`  - ${problem}`);
  });

  it("refuses a default shard that is not in shards, and unknown fields", () => {
    const p = file(
      "unknown.yaml",
      "shards:\n  a: { endpoint: 'a:1', weight: 3 }\ndefaultShard: b\ncomands: {}\n",
    );
    expect(failure(p).problems).toEqual([
      "shards.a: unknown field(s) weight",
      "unknown field(s) comands",
      `defaultShard: shard "b" is not in shards`,
    ]);
  });

  it("refuses a file that is not YAML, naming the line", () => {
    const err = failure(file("broken.yaml", "shards:\n  a: { endpoint: 'a:1'\ndefaultShard: a\n"));
    expect(err.message).toMatch(
      /^invalid static shard map .*broken\.yaml:\n {2}- not valid YAML: .*line 3/,
    );
    const dup = failure(file("dup.yaml", "defaultShard: a\ndefaultShard: b\nshards: {}\n"));
    expect(dup.problems).toEqual([
      expect.stringMatching(/^not valid YAML: Map keys must be unique/),
    ]);
  });

  it("refuses YAML that is not a mapping", () => {
    for (const [name, text] of [["list.yaml", "- a\n- b\n"], ["empty.yaml", ""], ["scalar.yaml", "hello\n"]]) {
      expect(failure(file(name!, text!)).problems).toEqual([
        "the file must be a YAML mapping with shards and defaultShard",
      ]);
    }
  }); // prettier-ignore

  it("names a file it cannot read", () => {
    const missing = path.join(dir, "missing.yaml");
    const err = failure(missing);
    expect(err.message).toContain(`cannot read static shard map ${missing}: ENOENT`);
    expect(err.cause).toMatchObject({ code: "ENOENT" });
  });
});
