import { bearerToken, looksLikeJwt } from "./bearer";
import { AuthError } from "./errors";

function refused(authorization: string | undefined): AuthError {
  try {
    bearerToken(authorization);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).code).toBe("UNAUTHENTICATED");
    return err as AuthError;
  }
  throw new Error("expected a refusal");
}

describe("bearerToken", () => {
  it("returns the token of a Bearer value, the scheme in any case", () => {
    expect(bearerToken("Bearer abc.def.ghi")).toBe("abc.def.ghi");
    expect(bearerToken("bearer   tok-123 ")).toBe("tok-123");
    expect(bearerToken("BEARER tok")).toBe("tok");
  });

  it("refuses missing metadata and says how to send it", () => {
    expect(refused(undefined).message).toMatch(/missing credentials.*Bearer <token>/);
    expect(refused("").message).toMatch(/missing credentials/);
    expect(refused("   ").message).toMatch(/missing credentials/);
  });

  it("refuses another scheme without repeating the value", () => {
    expect(refused("Basic dXNlcjpwYXNz").message).toMatch(/must use the Bearer scheme/);
    expect(refused("Basic dXNlcjpwYXNz").message).not.toContain("dXNlcjpwYXNz");
    // A token sent without a scheme must not come back in the message either.
    const bare = refused("s3cr3t-token-without-scheme");
    expect(bare.message).toMatch(/Bearer scheme/);
    expect(bare.message).not.toContain("s3cr3t");
  });

  it("refuses an empty token and one with inner whitespace", () => {
    expect(refused("Bearer").message).toMatch(/Bearer token is empty/);
    expect(refused("Bearer    ").message).toMatch(/missing credentials|empty/);
    expect(refused("Bearer abc def").message).toMatch(/whitespace/);
  });
});

describe("looksLikeJwt", () => {
  it("is true for exactly three dot-separated parts", () => {
    expect(looksLikeJwt("a.b.c")).toBe(true);
    expect(looksLikeJwt("a.b")).toBe(false);
    expect(looksLikeJwt("a.b.c.d")).toBe(false);
    expect(looksLikeJwt("plain-token")).toBe(false);
  });
});
