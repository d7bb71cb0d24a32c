import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { z } from "zod";
import { ConfigError, envKeyToField, loadConfig } from "./config-loader";

const schema = z.object({
  listen: z.string().default("127.0.0.1:7400"),
  graceMs: z.coerce.number().int().min(0).default(10_000),
  redisUrl: z.string().url().default("redis://127.0.0.1:6379"),
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
