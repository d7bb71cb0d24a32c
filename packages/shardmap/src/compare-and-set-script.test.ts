import * as fs from "node:fs";
import * as path from "node:path";

const script = fs.readFileSync(path.join(__dirname, "..", "lua", "compare-and-set-2.lua"), "utf8");
const code = script.replace(/--\[\[[\s\S]*?\]\]/, "");

describe("compare-and-set-2.lua stays KVRocks-safe", () => {
  it("uses only GET, SET, LPUSH, LTRIM and LINDEX, on declared keys", () => {
    const calls = [...code.matchAll(/redis\.call\('([A-Z]+)',\s*([^,)]+)/g)];
    expect(calls.length).toBeGreaterThan(0);
    expect(new Set(calls.map((c) => c[1]))).toEqual(
      new Set(["GET", "SET", "LPUSH", "LTRIM", "LINDEX"]),
    );
    for (const [, , key] of calls) expect(key).toMatch(/^KEYS\[[12]\]$/);
  });

  it("documents every KEYS, ARGV and return code it uses", () => {
    for (const used of new Set(code.match(/(KEYS|ARGV)\[\d\]/g))) {
      expect(script).toContain(`${used} `);
    }
    for (const returned of code.matchAll(/return \{(-?\d+),/g)) {
      expect(script).toMatch(new RegExp(`^\\s+${returned[1]} `, "m"));
    }
  });
});
