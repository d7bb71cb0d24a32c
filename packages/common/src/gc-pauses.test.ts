import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { forceGcsInOneTurn } from "@codeq/testing";
import {
  addGcPause,
  gcPausesSince,
  GcTally,
  NO_GC_PAUSES,
  observeGcPauses,
  type GcKind,
} from "./gc-pauses";

describe("observeGcPauses", () => {
  it("passes on every pause of a batch, by kind", async () => {
    const seen: GcKind[] = [];
    const stop = observeGcPauses((kind, ms) => {
      expect(ms).toBeGreaterThanOrEqual(0);
      seen.push(kind);
    });
    try {
      await forceGcsInOneTurn(5);
    } finally {
      stop();
    }
    expect(seen.filter((k) => k === "minor").length).toBeGreaterThanOrEqual(5);
    expect(seen.filter((k) => k === "major").length).toBeGreaterThanOrEqual(1);
  });

  it("stops when told", async () => {
    let seen = 0;
    observeGcPauses(() => seen++)();
    await forceGcsInOneTurn(2);
    expect(seen).toBe(0);
  });
});

describe("addGcPause", () => {
  it("sums scavenges apart from full collections", () => {
    let p = NO_GC_PAUSES;
    p = addGcPause(p, "minor", 1.5);
    p = addGcPause(p, "minor", 0.5);
    p = addGcPause(p, "incremental", 2);
    p = addGcPause(p, "major", 7);
    p = addGcPause(p, "weakcb", 1);
    expect(p).toEqual({
      scavenges: 2,
      scavengeMs: 2,
      fullGcs: 1,
      fullGcMs: 9,
      weakCallbackMs: 1,
    });
    expect(NO_GC_PAUSES.scavenges).toBe(0);
    expect(gcPausesSince(addGcPause(NO_GC_PAUSES, "minor", 0.5), p)).toEqual({
      scavenges: 1,
      scavengeMs: 1.5,
      fullGcs: 1,
      fullGcMs: 9,
      weakCallbackMs: 1,
    });
  });
});

describe("GcTally", () => {
  it("keeps a running total of this process's pauses", async () => {
    const tally = new GcTally();
    try {
      const before = tally.totals;
      await forceGcsInOneTurn(3);
      const window = gcPausesSince(before, tally.totals);
      expect(window.scavenges).toBeGreaterThanOrEqual(3);
      expect(window.fullGcs).toBeGreaterThanOrEqual(1);
      expect(window.fullGcMs).toBeGreaterThan(0);
    } finally {
      tally.stop();
    }
  });
});

describe("observeGcPauses under --minor-mc", () => {
  it("counts V8's minor mark-compacts as young-generation GCs", () => {
    // the built module, in a process of its own started with the flag (the CI builds before jest)
    const built = path.resolve(__dirname, "../dist/index.js");
    const script = `
      const { observeGcPauses } = require(${JSON.stringify(built)});
      const kinds = [];
      observeGcPauses((kind) => kinds.push(kind));
      require("node:v8").setFlagsFromString("--expose-gc");
      const gc = require("node:vm").runInNewContext("gc");
      for (let i = 0; i < 3; i++) gc({ type: "minor", execution: "sync" });
      setTimeout(() => console.log(JSON.stringify(kinds)), 50);`;
    const out = execFileSync(process.execPath, ["--minor-mc", "-e", script], { encoding: "utf8" });
    const kinds = JSON.parse(out) as string[];
    expect(kinds.filter((k) => k === "minor").length).toBeGreaterThanOrEqual(3);
  });
});
