import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  expectPositionals,
  GLOBAL_OPTIONS,
  globalOptions,
  int,
  list,
  parseCommandArgs,
  plaintextTokenWarning,
  splitCommand,
} from "./args";
import { COMMANDS } from "./commands";
import { UsageError } from "./errors";

const groups = (w: string) => w === "dlq";

describe("splitCommand", () => {
  test("finds the command after global options that take values", () => {
    expect(splitCommand(["--router", "h:1", "--json", "shards"], groups)).toEqual({
      words: ["shards"],
      rest: ["--router", "h:1", "--json"],
    });
  });

  test("takes a subcommand after a group and leaves the rest in order", () => {
    expect(splitCommand(["dlq", "purge", "X", "--yes"], groups)).toEqual({
      words: ["dlq", "purge"],
      rest: ["X", "--yes"],
    });
  });

  test("no command: no words", () => {
    expect(splitCommand(["--help"], groups)).toEqual({ words: [], rest: ["--help"] });
  });
});

describe("parseCommandArgs", () => {
  const options = {
    to: { type: "string", description: "" },
    wait: { type: "boolean", description: "" },
  } as const;

  test("command options and global options mix in any order", () => {
    const { values, positionals } = parseCommandArgs(
      ["X", "--to", "b", "--json", "--wait", "--tenant=acme"],
      options,
    );
    expect(positionals).toEqual(["X"]);
    expect(values).toMatchObject({ to: "b", json: true, wait: true, tenant: "acme" });
  });

  test("an unknown option is a one-line usage error naming it", () => {
    expect(() => parseCommandArgs(["X", "--bogus"], options)).toThrow(
      new UsageError("unknown option --bogus"),
    );
  });

  test("a string option without its value is a usage error", () => {
    expect(() => parseCommandArgs(["X", "--to"], options)).toThrow(
      new UsageError("option --to needs a value"),
    );
  });

  test("a string option followed by a dash says how to give such a value", () => {
    expect(() => parseCommandArgs(["X", "--to", "--wait"], options)).toThrow(
      new UsageError('option --to needs a value; one that starts with "-" is given as --to=VALUE'),
    );
  });

  test("a boolean option given a value is a usage error", () => {
    expect(() => parseCommandArgs(["--wait=yes"], options)).toThrow(
      new UsageError("option --wait takes no value"),
    );
  });
});

describe("plaintextTokenWarning", () => {
  test("warns of a token sent without TLS off this host, and of nothing else", () => {
    const warned = (router: string, env: Record<string, string> = {}) => {
      const all = { CODEQ_TOKEN: "t0k3n", ...env };
      return plaintextTokenWarning(globalOptions({ router }, all), all);
    };
    expect(warned("codeq.example.com:7300")).toBe(
      "warning: the bearer token goes to codeq.example.com:7300 without TLS, readable on the way; use --tls (or --tls-ca), or set CODEQ_PLAINTEXT_TOKEN_OK=1 where the path is protected otherwise",
    );
    expect(warned("codeq.example.com:7300", { CODEQ_PLAINTEXT_TOKEN_OK: "1" })).toBeUndefined();
    expect(warned("10.0.0.5:7300")).toMatch(/^warning: /);
    expect(warned("[fd00::5]:7300")).toMatch(/^warning: /);
    expect(warned("codeq.example.com:7300", { CODEQ_TLS: "1" })).toBeUndefined();
    for (const local of [
      "127.0.0.1:7300",
      "127.1.2.3:1",
      "localhost:7300",
      "LocalHost:7300",
      "router.localhost:7300",
      "0.0.0.0:7300",
      "[::1]:7300",
    ])
      expect(warned(local)).toBeUndefined();
    expect(plaintextTokenWarning(globalOptions({ router: "codeq.example.com:7300" }, {}))).toBe(
      undefined,
    );
  });
});

describe("globalOptions", () => {
  test("flags win over the environment, which wins over the defaults", () => {
    const env = { CODEQ_ROUTER: "r:1", CODEQ_TENANT: "envt" };
    expect(globalOptions({}, {})).toMatchObject({
      router: "127.0.0.1:7300",
      tenant: "default",
      tenantGiven: false,
      roles: [],
      json: false,
      timeoutMs: 10_000,
    });
    expect(globalOptions({}, env)).toMatchObject({ router: "r:1", tenant: "envt" });
    expect(
      globalOptions({ router: "h:2", tenant: "t", roles: "worker, producer", timeout: "50" }, env),
    ).toMatchObject({
      router: "h:2",
      tenant: "t",
      tenantGiven: true,
      roles: ["worker", "producer"],
      timeoutMs: 50,
    });
  });

  test("a router without a port or a bad tenant is a usage error", () => {
    expect(() => globalOptions({ router: "localhost" }, {})).toThrow(UsageError);
    expect(() => globalOptions({ tenant: "a:b" }, {})).toThrow(UsageError);
    expect(globalOptions({ router: "[::1]:7300" }, {}).router).toBe("[::1]:7300");
  });

  test("a token from --token-file, CODEQ_TOKEN_FILE or CODEQ_TOKEN, trimmed; none by default", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-args-"));
    try {
      const file = path.join(dir, "token");
      fs.writeFileSync(file, "s3cret\n");
      expect(globalOptions({}, {}).token).toBeUndefined();
      expect(globalOptions({}, { CODEQ_TOKEN: "from-env" }).token).toBe("from-env");
      expect(globalOptions({}, { CODEQ_TOKEN_FILE: file, CODEQ_TOKEN: "x" }).token).toBe("s3cret");
      expect(globalOptions({ "token-file": file }, { CODEQ_TOKEN: "x" }).token).toBe("s3cret");
      // unreadable, or not one header-safe word: usage errors naming what is wrong
      expect(() => globalOptions({ "token-file": path.join(dir, "none") }, {})).toThrow(
        /--token-file: cannot read .*none \(ENOENT\)/,
      );
      fs.writeFileSync(file, "two\nlines\n");
      expect(() => globalOptions({ "token-file": file }, {})).toThrow(/one word of visible ASCII/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("TLS when --tls, a CA or a client certificate is given; --tls-cert and --tls-key together", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "codeq-args-"));
    try {
      const file = (name: string) => {
        fs.writeFileSync(path.join(dir, name), name);
        return path.join(dir, name);
      };
      expect(globalOptions({}, {}).tls).toBeUndefined();
      expect(globalOptions({ tls: true }, {}).tls).toEqual({
        ca: undefined,
        cert: undefined,
        key: undefined,
      });
      expect(globalOptions({}, { CODEQ_TLS: "1" }).tls).toBeDefined();
      expect(globalOptions({}, { CODEQ_TLS_CA_FILE: file("ca") }).tls?.ca?.toString()).toBe("ca");
      const mutual = globalOptions({ "tls-cert": file("crt"), "tls-key": file("key") }, {}).tls;
      expect([mutual?.cert?.toString(), mutual?.key?.toString()]).toEqual(["crt", "key"]);
      expect(() => globalOptions({ "tls-cert": file("crt") }, {})).toThrow(
        /--tls-cert and --tls-key go together/,
      );
      expect(() => globalOptions({ "tls-ca": path.join(dir, "none") }, {})).toThrow(
        /--tls-ca: cannot read/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("option helpers", () => {
  test("int accepts integers within bounds only", () => {
    expect(int({ n: "7" }, "n", { min: 1, max: 9 })).toBe(7);
    expect(int({}, "n", { min: 1, max: 9 })).toBeUndefined();
    for (const bad of ["0", "10", "1.5", "x", "-1", ""])
      expect(() => int({ n: bad }, "n", { min: 1, max: 9 })).toThrow(
        "--n must be an integer from 1 to 9",
      );
  });

  test("list splits on commas and drops empty entries", () => {
    expect(list({ ids: "a, b,,c" }, "ids")).toEqual(["a", "b", "c"]);
    expect(list({}, "ids")).toEqual([]);
  });

  test("expectPositionals names what is missing or extra", () => {
    expect(() => expectPositionals([], ["COMMAND"])).toThrow("missing COMMAND");
    expect(() => expectPositionals(["a", "b"], ["ID"])).toThrow("unexpected argument b");
    expect(() => expectPositionals([], ["COMMAND..."])).toThrow("missing COMMAND");
    expect(() => expectPositionals(["a", "b", "c"], ["COMMAND..."])).not.toThrow();
  });
});

describe("command options", () => {
  test("none takes the name of a global option (it would read the global's value), but assign's --tenant", () => {
    const shadowing = COMMANDS.flatMap((c) =>
      Object.keys(c.options)
        .filter((name) => name in GLOBAL_OPTIONS)
        .map((name) => `${c.name} --${name}`),
    );
    expect(shadowing).toEqual(["assign --tenant"]);
    expect(COMMANDS.find((c) => c.name === "assign")?.queueTenant).toBe(true);
  });
});
