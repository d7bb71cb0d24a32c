import { Metadata, Status } from "nice-grpc";
import {
  fromRouter,
  identityFrom,
  identityMetadata,
  statedIdentity,
  type StatedHeaders,
} from "./identity";

const headers = (h: Record<string, string>): StatedHeaders => ({ get: (k) => h[k] });

describe("stated identity", () => {
  test("roles: absent gives the defaults, stated gives those, stated empty gives none", () => {
    const roles = (h: Record<string, string>) => [
      ...statedIdentity(headers({ "x-codeq-tenant": "t1", ...h }), "router").roles,
    ];
    expect(roles({})).toEqual(["producer", "worker"]);
    expect(roles({ "x-codeq-roles": "worker, admin" })).toEqual(["worker", "admin"]);
    expect(roles({ "x-codeq-roles": "" })).toEqual([]);
    expect(() => roles({ "x-codeq-roles": "root" })).toThrow(/unknown role/);
  });

  test("reads call metadata and message fields alike; a secret is required when one is set", () => {
    const secret = "a-router-secret-of-at-least-32-characters";
    const m = new Metadata({ "x-codeq-tenant": "t1", "x-codeq-commands": "A,B" });
    expect(() => identityFrom(m, { devIdentity: false, routerSecret: secret })).toThrow(
      expect.objectContaining({ code: Status.UNAUTHENTICATED }),
    );
    m.set("x-codeq-router-secret", secret);
    expect(identityFrom(m, { devIdentity: false, routerSecret: secret }).commands).toEqual([
      "A",
      "B",
    ]);
    // a cross-tenant worker's commands: absent is every command, stated empty is none
    const worker = (h: Record<string, string>) =>
      identityFrom(
        headers({ "x-codeq-tenant": "t1", "x-codeq-roles": "cross-tenant-worker", ...h }),
        true,
      ).commands;
    expect(worker({})).toBeUndefined();
    expect(worker({ "x-codeq-commands": "" })).toEqual([]);
    const fields = headers({ "x-codeq-tenant": "t2", "x-codeq-principal": "svc%201" });
    expect(identityFrom(fields, true)).toMatchObject({ tenant: "t2", principal: "svc 1" });
  });

  test("internal services admit routers only: by mutual TLS, the secret, or in development anyone; with none of them no one", () => {
    const secret = "a-router-secret-of-at-least-32-characters";
    const bare = headers({});
    const presenting = headers({ "x-codeq-router-secret": secret });
    expect(fromRouter(bare, { devIdentity: false, trustedTransport: true })).toBe(true);
    expect(fromRouter(bare, { devIdentity: false, routerSecret: secret })).toBe(false);
    expect(fromRouter(presenting, { devIdentity: false, routerSecret: secret })).toBe(true);
    expect(fromRouter(bare, { devIdentity: true })).toBe(true);
    expect(fromRouter(bare, { devIdentity: false })).toBe(false);
  });

  test("during a rotation the previous router secret is accepted beside the new one, and nothing else", () => {
    const next = "the-new-router-secret-of-32-characters-or-more";
    const previous = "the-old-router-secret-of-32-characters-or-more";
    const options = { devIdentity: false, routerSecret: next, previousRouterSecret: previous };
    const presenting = (secret: string) =>
      headers({ "x-codeq-tenant": "t1", "x-codeq-router-secret": secret });
    for (const secret of [next, previous]) {
      expect(identityFrom(presenting(secret), options).tenant).toBe("t1");
      expect(fromRouter(presenting(secret), options)).toBe(true);
    }
    expect(() => identityFrom(presenting("some-other-secret-of-32-characters-x"), options)).toThrow(
      expect.objectContaining({ code: Status.UNAUTHENTICATED }),
    );
    expect(fromRouter(presenting("some-other-secret-of-32-characters-x"), options)).toBe(false);
    // once dropped, the previous one is refused
    expect(fromRouter(presenting(previous), { devIdentity: false, routerSecret: next })).toBe(
      false,
    );
  });
});

describe("identityMetadata", () => {
  it("states a principal cut at 512 code points, never half a surrogate pair, and a lone surrogate as U+FFFD", () => {
    const roles = new Set<never>();
    const long = identityMetadata({ tenant: "t", principal: "a".repeat(511) + "😀😀", roles });
    expect(decodeURIComponent(long.get("x-codeq-principal")!)).toBe("a".repeat(511) + "😀");
    const lone = identityMetadata({ tenant: "t", principal: "x\uD800y", roles });
    expect(decodeURIComponent(lone.get("x-codeq-principal")!)).toBe("x\uFFFDy");
  });
});
