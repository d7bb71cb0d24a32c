import { parseBenchArgs, UsageError } from "./args";
import { SCENARIOS } from "./scenarios";

const KNOWN = ["engine", "shard"];

describe("parseBenchArgs", () => {
  it("runs every known scenario when none is named, with the default durations", () => {
    expect(parseBenchArgs([], KNOWN)).toMatchObject({
      scenarios: KNOWN,
      seconds: 5,
      warmupSeconds: 1,
      list: false,
    });
  });

  it("runs only the named scenarios, in the order given, each once", () => {
    const args = parseBenchArgs(["shard", "engine", "shard", "--seconds", "2.5"], KNOWN);
    expect(args.scenarios).toEqual(["shard", "engine"]);
    expect(args.seconds).toBe(2.5);
  });

  it("refuses an unknown scenario and names the known ones", () => {
    expect(() => parseBenchArgs(["engnie"], KNOWN)).toThrow(
      new UsageError("unknown scenario engnie; known: engine, shard"),
    );
  });

  it("refuses durations that are not a sensible number of seconds, and unknown flags", () => {
    expect(() => parseBenchArgs(["--seconds", "0"], KNOWN)).toThrow(UsageError);
    expect(() => parseBenchArgs(["--seconds", "five"], KNOWN)).toThrow(UsageError);
    expect(() => parseBenchArgs(["--warmup", "-1"], KNOWN)).toThrow(UsageError);
    expect(() => parseBenchArgs(["--secs", "3"], KNOWN)).toThrow(UsageError);
  });
});

describe("scenario registry", () => {
  it("has unique names that can be typed on a command line", () => {
    const names = SCENARIOS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^[a-z][a-z0-9-]*$/);
  });
});
