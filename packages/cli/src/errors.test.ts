import { ClientError, Status } from "nice-grpc";
import { describeError, ExitCode, UsageError } from "./errors";

const via = { router: "127.0.0.1:7300", timeoutMs: 500, token: undefined, tls: undefined };

describe("describeError", () => {
  test("a refusal exits 2 with the status name and message", () => {
    const err = new ClientError(
      "/codeq.v1.AdminService/AbortMigration",
      Status.NOT_FOUND,
      "no migration x",
    );
    expect(describeError(err, via)).toEqual({
      code: ExitCode.REFUSED,
      lines: ["NOT_FOUND: no migration x"],
    });
  });

  test("unreachable and too slow exit 3 and name the router", () => {
    const down = new ClientError("/m", Status.UNAVAILABLE, "connect ECONNREFUSED ");
    expect(describeError(down, via)).toEqual({
      code: ExitCode.UNAVAILABLE,
      lines: [
        "UNAVAILABLE: connect ECONNREFUSED",
        "(via router 127.0.0.1:7300; --router or CODEQ_ROUTER names another; --tls or --tls-ca if it serves TLS)",
      ],
    });
    // over TLS already: no TLS hint
    const tls = { ca: undefined, cert: undefined, key: undefined };
    expect(describeError(down, { ...via, tls }).lines[1]).toBe(
      "(via router 127.0.0.1:7300; --router or CODEQ_ROUTER names another)",
    );
    const slow = new ClientError("/m", Status.DEADLINE_EXCEEDED, "Deadline exceeded");
    expect(describeError(slow, via)).toMatchObject({
      code: ExitCode.UNAVAILABLE,
      lines: ["DEADLINE_EXCEEDED: Deadline exceeded", expect.stringContaining("--timeout 500 ms")],
    });
  });

  test("an UNAVAILABLE the router sent about a shard or the control store does not blame the router", () => {
    const hint = (details: string) =>
      describeError(new ClientError("/m", Status.UNAVAILABLE, details), via).lines[1];
    for (const details of [
      "shard b (127.0.0.1:7401) is unavailable: its circuit breaker is open; retry in 2000 ms",
      "shard b: connect ECONNREFUSED 127.0.0.1:7401",
      "task 01ARZ3NDEKTSV4RRFFQ69G5FAV not found on the shards that answered; b did not answer: x",
    ])
      expect(hint(details)).toBe(
        "(router 127.0.0.1:7300 answered: a shard behind it is unavailable; `codeq shards` shows which)",
      );
    expect(
      hint(
        "the control store does not answer: Connection is closed.; map changes wait until it is back",
      ),
    ).toContain("answered: its control store is unavailable");
    // grpc-js's own words are about reaching the router, whatever its name holds
    expect(hint("Name resolution failed for target dns:codeq-shards.invalid:7300")).toContain(
      "--router or CODEQ_ROUTER names another",
    );
  });

  test("a refused credential exits 2 and says where a token goes, or that the one given was not taken", () => {
    const err = new ClientError("/m", Status.UNAUTHENTICATED, "a credential is required");
    expect(describeError(err, via)).toEqual({
      code: ExitCode.REFUSED,
      lines: [
        "UNAUTHENTICATED: a credential is required",
        "(the router wants a credential: the token in CODEQ_TOKEN, or --token-file FILE)",
      ],
    });
    expect(describeError(err, { ...via, token: "t" }).lines[1]).toBe(
      "(the router did not accept the token given)",
    );
  });

  test("a usage error exits 1 with its hint", () => {
    expect(describeError(new UsageError("missing COMMAND", "run `codeq stats --help`"))).toEqual({
      code: ExitCode.USAGE,
      lines: ["codeq: missing COMMAND", "run `codeq stats --help`"],
    });
  });
});
