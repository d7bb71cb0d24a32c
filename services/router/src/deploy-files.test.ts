import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { loadShardConfig } from "@codeq/shard";
import { loadStaticSupplier } from "@codeq/shardmap";
import { loadRouterConfig } from "./config";

/**
 * deploy/: no Docker engine runs here, so the compose file is checked against the
 * services it starts: every service's environment is one its config loader takes,
 * the files it names are the secrets and configs the compose file mounts there, and
 * the first shard map is valid and names the shard services.
 */
const DEPLOY = path.join(__dirname, "..", "..", "..", "deploy");

interface Service {
  readonly environment?: Record<string, string>;
  readonly secrets?: string[];
  readonly configs?: { source: string; target: string }[];
}

const compose = parse(fs.readFileSync(path.join(DEPLOY, "docker-compose.yml"), "utf8"), {
  merge: true,
}) as {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
  configs: Record<string, { file: string }>;
};

/** Where a service sees each file it mounts, and a local stand-in for it. */
function mounted(service: Service, dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const name of service.secrets ?? []) {
    expect(compose.secrets).toHaveProperty(name);
    const local = path.join(dir, name);
    // stand-ins: a secret of the least length, a tokens file of one token
    fs.writeFileSync(
      local,
      name === "tokens"
        ? "tokens:\n  - { token: a-token-of-at-least-thirty-two-chars, tenant: acme, roles: [producer] }\n"
        : "s".repeat(32),
    );
    files.set(`/run/secrets/${name}`, local);
  }
  for (const c of service.configs ?? []) {
    expect(compose.configs).toHaveProperty(c.source);
    files.set(c.target, path.join(DEPLOY, compose.configs[c.source]!.file));
  }
  return files;
}

test("every service's environment is one its config loader takes, with the files it names mounted", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-deploy-"));
  try {
    const shards = Object.entries(compose.services).filter(([n]) => n.startsWith("shard-"));
    const routers = Object.entries(compose.services).filter(([n]) => n.startsWith("router-"));
    expect(shards.length).toBeGreaterThan(0);
    expect(routers.length).toBeGreaterThan(0);
    for (const [name, service] of [...shards, ...routers]) {
      const files = mounted(service, dir);
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        const file = files.get(String(value));
        if (key.endsWith("_FILE"))
          expect([name, key, file]).toEqual([name, key, expect.any(String)]);
        env[key] = file ?? String(value);
      }
      if (name.startsWith("shard-")) {
        const config = loadShardConfig(env);
        expect(config.controlUrl).not.toBe("");
        expect(config.routerSecretFile).not.toBe("");
      } else {
        const config = loadRouterConfig(env);
        expect(config.shardSecretFile).not.toBe("");
        expect(config.authTokensFile).not.toBe("");
        // the first map names the compose file's shard services at their listen port
        const map = loadStaticSupplier(config.bootstrapMapFile).map;
        for (const [id, shard] of Object.entries(map.shards))
          expect(shard.endpoint).toBe(`shard-${id}:7400`);
        expect(Object.keys(map.shards).map((id) => `shard-${id}`)).toEqual(shards.map(([n]) => n));
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});
