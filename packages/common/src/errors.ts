/** Any thrown value as an Error (non-Errors are wrapped, keeping the original as `cause`). */
export function toError(err: unknown): Error {
  if (err instanceof Error) return err;
  // An Error from another realm (a vm context, jest's sandbox) fails instanceof.
  if (typeof err === "object" && err !== null && typeof (err as Error).message === "string")
    return err as Error;
  return new Error(String(err), { cause: err });
}

/** The message of any thrown value (also of errors from another realm, which fail instanceof). */
export function messageOf(err: unknown): string {
  if (typeof err === "object" && err !== null && typeof (err as Error).message === "string")
    return (err as Error).message;
  return String(err);
}

/** A message listing every problem, one per line, under a heading. */
export function formatProblems(heading: string, problems: readonly string[]): string {
  return [heading, ...problems.map((p) => `  - ${p}`)].join("\n");
}
