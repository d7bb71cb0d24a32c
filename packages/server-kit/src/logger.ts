import pino, { type Logger } from "pino";

export type { Logger } from "pino";

/** A structured JSON logger (one object per line on stdout) tagged with the service name. */
export function createLogger(
  service: string,
  level = process.env.CODEQ_LOG_LEVEL ?? "info",
): Logger {
  return pino({ name: service, level, base: { service, pid: process.pid } });
}
