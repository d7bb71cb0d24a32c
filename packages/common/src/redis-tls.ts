import * as fs from "node:fs";

/**
 * ioredis options for TLS towards a `rediss://` URL (KVRocks with TLS), checked against
 * `caFile` when given (else the system's CAs); none for a `redis://` URL.
 */
export function redisTls(url: string, caFile: string): { tls?: { ca?: Buffer } } {
  if (!url.startsWith("rediss://")) return {};
  return { tls: caFile ? { ca: fs.readFileSync(caFile) } : {} };
}
