import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { z } from "zod";
import {
  ConfigError,
  envKeyToField,
  ignoredSettings,
  intSetting,
  loadConfig,
} from "./config-loader";

const schema = z.object({
  listen: z.string().default("127.0.0.1:7400"),
  graceMs: z.coerce.number().int().min(0).default(10_000),
  redisUrl: z.string().url().default("redis://127.0.0.1:6379"),
});

/** As the services declare theirs: unknown keys refused, numbers that a blank leaves at their default. */
const strict = z.strictObject({
  listen: z.string().default("127.0.0.1:7400"),
  graceMs: intSetting(0, 60_000, 10_000),
});

describe("loadConfig of a strict schema", () => {
  it("reads a number left blank as not given (its default), not as 0", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-config-"));
    const file = path.join(dir, "x.yaml");
    fs.writeFileSync(file, "graceMs:\n");
    try {
      expect(loadConfig(strict, "CODEQ_X_", { CODEQ_X_GRACE_MS: "" }).graceMs).toBe(10_000);
      expect(loadConfig(strict, "CODEQ_X_", { CODEQ_X_CONFIG_FILE: file }).graceMs).toBe(10_000);
      // a blank string setting keeps its meaning (empty disables, for some)
      expect(loadConfig(strict, "CODEQ_X_", { CODEQ_X_LISTEN: "" }).listen).toBe("");
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it("ignores, and says so, a prefixed variable that names no setting; refuses such a key in the file", () => {
    const config = loadConfig(strict, "CODEQ_X_", {
      CODEQ_X_GRACE: "5", // misspelt
      CODEQ_X_SERVICE_HOST: "10.0.0.1", // what Kubernetes sets for a Service named codeq-x
      CODEQ_X_GRACE_MS: "7",
    });
    expect(config.graceMs).toBe(7);
    expect([...ignoredSettings(config)].sort()).toEqual(["CODEQ_X_GRACE", "CODEQ_X_SERVICE_HOST"]);
    expect(ignoredSettings(loadConfig(strict, "CODEQ_X_", {}))).toEqual([]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-config-"));
    const file = path.join(dir, "x.yaml");
    fs.writeFileSync(file, "grace: 5\n");
    try {
      expect(() => loadConfig(strict, "CODEQ_X_", { CODEQ_X_CONFIG_FILE: file })).toThrow(
        /grace in CODEQ_X_CONFIG_FILE: not a setting of this service \(misspelt\?\)/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe("loadConfig", () => {
  it("fills every default and freezes the result", () => {
    const config = loadConfig(schema, "CODEQ_X_", {});
    expect(config).toEqual({
      listen: "127.0.0.1:7400",
      graceMs: 10_000,
      redisUrl: "redis://127.0.0.1:6379",
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("maps prefixed SNAKE_CASE variables to camelCase settings and ignores others", () => {
    expect(envKeyToField("CODEQ_X_REDIS_URL", "CODEQ_X_")).toBe("redisUrl");
    const config = loadConfig(schema, "CODEQ_X_", {
      CODEQ_X_GRACE_MS: "250",
      CODEQ_Y_GRACE_MS: "9",
    });
    expect(config.graceMs).toBe(250);
  });

  it("reads a YAML file and lets the environment override it", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-config-"));
    const file = path.join(dir, "shard.yaml");
    fs.writeFileSync(file, "listen: 0.0.0.0:9000\ngraceMs: 5\n");
    try {
      const config = loadConfig(schema, "CODEQ_X_", {
        CODEQ_X_CONFIG_FILE: file,
        CODEQ_X_GRACE_MS: "7",
      });
      expect(config.listen).toBe("0.0.0.0:9000");
      expect(config.graceMs).toBe(7);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names every bad setting by its environment variable", () => {
    const load = () =>
      loadConfig(schema, "CODEQ_X_", { CODEQ_X_GRACE_MS: "-1", CODEQ_X_REDIS_URL: "nope" });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(
      /CODEQ_X_GRACE_MS[\s\S]*CODEQ_X_REDIS_URL|CODEQ_X_REDIS_URL[\s\S]*CODEQ_X_GRACE_MS/,
    );
  });

  it("reports an unreadable file", () => {
    expect(() =>
      loadConfig(schema, "CODEQ_X_", { CODEQ_X_CONFIG_FILE: "/nonexistent.yaml" }),
    ).toThrow(/CODEQ_X_CONFIG_FILE=\/nonexistent.yaml/);
  });
});
