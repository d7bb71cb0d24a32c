import * as fs from "node:fs";

/** Shortest secret accepted, in characters: a shared secret is a key, not a password. */
export const MIN_SECRET_LENGTH = 32;

/**
 * A shared secret from its setting or its file (the file wins; trailing whitespace
 * is dropped). Undefined when neither is set. Throws when it is too short to be a key.
 */
export function readSecret(
  what: string,
  value: string | undefined,
  file: string | undefined,
): string | undefined {
  const secret = file ? fs.readFileSync(file, "utf8").trimEnd() : value || undefined;
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH)
    throw new Error(
      `${what} must be at least ${MIN_SECRET_LENGTH} characters (from ${file ? file : "its setting"})`,
    );
  return secret;
}
