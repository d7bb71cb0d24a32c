import { readFileSync } from "node:fs";
import path from "node:path";
import { scriptSources } from "./script-loader";

describe("Lua scripts", () => {
  const scripts = [...scriptSources().values()];

  it("are one file per operation with a header naming KEYS, ARGV and what it returns", () => {
    expect(scripts.map((s) => s.operation).sort()).toEqual(
      [
        "ack",
        "cleanup",
        "dead-list",
        "enqueue",
        "enqueue-lease",
        "export",
        "export-confirm",
        "export-restore",
        "extend",
        "forget",
        "get",
        "import",
        "lease",
        "nack",
        "promote",
        "purge",
        "reap",
        "redrive",
        "stats",
        "unlease",
      ].sort(),
    );
    for (const s of scripts) {
      const header = s.lua.slice(0, s.lua.indexOf("]]"));
      expect(header).toMatch(/KEYS\[1(\]|\.\.)/);
      expect(header).toMatch(/Returns/);
      // the file name's count is the highest fixed KEYS index the header lists
      const indices = [...header.matchAll(/KEYS\[(\d+)(?:\.\.(\d+))?\]/g)].map((m) =>
        Number(m[2] ?? m[1]),
      );
      expect(Math.max(...indices)).toBe(s.fixedKeys);
    }
  });

  // (Globals need no check here: redis-server 7, like KVRocks, refuses a script that creates one.)
  it("never build key names inside Lua", () => {
    for (const s of scripts) {
      const code = s.lua.replace(/--\[\[[\s\S]*?\]\]/g, "").replace(/--.*$/gm, "");
      // keys are only ever KEYS[i]: no string concatenation into a redis.call key position
      expect(code).not.toMatch(/redis\.call\('[A-Z]+',\s*[^K'][^,)]*\.\./);
    }
  });

  it("call only the commands docs/storage.md lists as supported by KVRocks", () => {
    const doc = readFileSync(path.join(__dirname, "../../../docs/storage.md"), "utf8");
    const line = /- Commands used: `([^`]+)`/.exec(doc)?.[1] ?? "";
    const listed = new Set(line.match(/\b[A-Z]{3,}\b/g));
    const used = new Set(
      scripts.flatMap((s) =>
        [...s.lua.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)].map((m) =>
          m[1]!.toUpperCase(),
        ),
      ),
    );
    expect([...used].filter((c) => !listed.has(c))).toEqual([]);
    expect(used.size).toBeGreaterThan(10);
    // a command named any other way would escape the check
    for (const s of scripts) expect(s.lua).not.toMatch(/redis\.p?call\(\s*[^'"\s]/);
  });

  it("expand each include once", () => {
    const nack = scriptSources().get("nack")!;
    expect(nack.lua.match(/local function backoffDelay/g)).toHaveLength(1);
    expect(nack.lua).not.toMatch(/@include/);
  });
});
