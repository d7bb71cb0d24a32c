import * as path from "node:path";

/** Test-only certificates (see certs/README.md): ca, server, client, stranger (another CA). */
export type TestCert =
  | "ca.crt"
  | "server.crt"
  | "server.key"
  | "client.crt"
  | "client.key"
  | "stranger.crt"
  | "stranger.key";

/** The path of a test certificate or key file. */
export function testCert(name: TestCert): string {
  return path.join(__dirname, "..", "certs", name);
}
