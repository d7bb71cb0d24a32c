import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT, SERVICE_NODE_FLAGS, serviceArgs, serviceNodeFlags } from "./service-process";

describe("serviceNodeFlags", () => {
  it("are the GC settings unless CODEQ_SERVICE_NODE_FLAGS replaces them, empty meaning V8's defaults", () => {
    expect(serviceNodeFlags({})).toEqual([...SERVICE_NODE_FLAGS]);
    expect(serviceNodeFlags({ CODEQ_SERVICE_NODE_FLAGS: "" })).toEqual([]);
    expect(
      serviceNodeFlags({ CODEQ_SERVICE_NODE_FLAGS: " --max-semi-space-size=64  --trace-gc " }),
    ).toEqual(["--max-semi-space-size=64", "--trace-gc"]);
  });

  it("are flags this node accepts on its command line", () => {
    const out = execFileSync(process.execPath, [
      ...SERVICE_NODE_FLAGS,
      "-e",
      "process.stdout.write('ok')",
    ]);
    expect(out.toString()).toBe("ok");
  });

  it("are the flags the image starts services with", () => {
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, "deploy", "Dockerfile"), "utf8");
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(entrypoint ?? "[]")).toEqual([
      "node",
      "--enable-source-maps",
      ...SERVICE_NODE_FLAGS,
    ]);
  });

  it("are read from the environment the service is started with", () => {
    const args = serviceArgs("shard", { CODEQ_SERVICE_NODE_FLAGS: "--trace-gc" });
    expect(args.slice(0, 2)).toEqual(["--enable-source-maps", "--trace-gc"]);
    expect(args[2]).toMatch(/services[/\\]shard[/\\]dist[/\\]main\.js$/);
  });
});
