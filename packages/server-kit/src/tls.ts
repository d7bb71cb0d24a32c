import * as fs from "node:fs";
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";

/** A server's TLS files; with `clientCaFile`, clients must present a certificate it signed (mTLS). */
export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile?: string | undefined;
}

/** A client's TLS files: the CA that signed the server's certificate, and its own for mTLS. */
export interface ClientTls {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/** Plaintext without files; TLS (and mTLS with a client CA) with them. */
export function serverCredentials(tls: ServerTls | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const ca = tls.clientCaFile ? fs.readFileSync(tls.clientCaFile) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: fs.readFileSync(tls.certFile), private_key: fs.readFileSync(tls.keyFile) }],
    ca !== null,
  );
}

/** Undefined (plaintext) without any file; TLS, with a client certificate when given, otherwise. */
export function channelCredentials(tls: ClientTls | undefined): ChannelCredentials | undefined {
  if (!tls || (!tls.caFile && !tls.certFile)) return undefined;
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile))
    throw new Error("a client certificate needs both its certificate and its key file");
  const read = (f: string | undefined) => (f ? fs.readFileSync(f) : null);
  return ChannelCredentials.createSsl(read(tls.caFile), read(tls.keyFile), read(tls.certFile));
}

/** ServerTls from settings where "" means unset; undefined when no certificate is configured. */
export function serverTlsOf(
  certFile: string,
  keyFile: string,
  clientCaFile: string,
): ServerTls | undefined {
  if (!certFile && !keyFile) {
    if (clientCaFile)
      throw new Error("a client CA (mutual TLS) needs the server's certificate and key too");
    return undefined;
  }
  if (!certFile || !keyFile) throw new Error("TLS needs both the certificate and the key file");
  return { certFile, keyFile, ...(clientCaFile ? { clientCaFile } : {}) };
}
