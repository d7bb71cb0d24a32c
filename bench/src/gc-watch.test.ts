import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { NO_GC_PAUSES } from "@codeq/common";
import { collectProcessMetrics, serveMetrics, type MetricsServer } from "@codeq/server-kit";
import { forceGcsInOneTurn, freePort } from "@codeq/testing";
import { scrapeGcTotals, watchWindowGc } from "./gc-watch";

/** What scrapeGcTotals reads from a metrics endpoint that serves `text`. */
async function scrapeServed(text: string, prefix: string) {
  const srv = http.createServer((_, res) => res.end(text));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/metrics`;
    return await scrapeGcTotals({ url, prefix });
  } finally {
    await new Promise((r) => srv.close(r));
  }
}

describe("GC pauses of a service, from its metrics", () => {
  let server: MetricsServer;
  const prefix = "codeq_test_process_";

  beforeAll(async () => {
    const registry = new Registry();
    collectProcessMetrics(registry, prefix);
    server = await serveMetrics(registry, "127.0.0.1:0");
  });
  afterAll(() => server.close());

  it("reads a process that has not collected yet as no pauses", async () => {
    const registry = new Registry();
    collectProcessMetrics(registry, "fresh_");
    const text = await registry.metrics();
    // what a process exports before its first GC: the histogram, without a sample
    expect(text).toContain("# TYPE fresh_nodejs_gc_duration_seconds histogram");
    const unsampled = text.replace(/^fresh_nodejs_gc_duration_seconds_.*$/gm, "");
    expect(await scrapeServed(unsampled, "fresh_")).toEqual(NO_GC_PAUSES);
  });

  it("reads the running totals and a window's difference", async () => {
    const endpoint = { url: `http://127.0.0.1:${server.port}/metrics`, prefix };
    const window = watchWindowGc({ svc: endpoint });
    await window.before();
    await forceGcsInOneTurn(4);
    await window.after();
    const { svc, bench } = window.pauses();
    // the service here is this process: both saw the same pauses
    for (const p of [svc!, bench!]) {
      expect(p.scavenges).toBeGreaterThanOrEqual(4);
      expect(p.fullGcs).toBeGreaterThanOrEqual(1);
      expect(p.fullGcMs).toBeGreaterThan(0);
    }
    expect((await scrapeGcTotals(endpoint))!.scavenges).toBeGreaterThanOrEqual(svc!.scavenges);
  });

  it("reads the kind among other labels, and refuses samples without one", async () => {
    const lines = (labels: string) =>
      [
        "# TYPE x_nodejs_gc_duration_seconds histogram",
        `x_nodejs_gc_duration_seconds_sum{${labels}} 0.003`,
        `x_nodejs_gc_duration_seconds_count{${labels}} 3`,
      ].join("\n");
    expect(await scrapeServed(lines('shard="a",kind="minor"'), "x_")).toMatchObject({
      scavenges: 3,
      scavengeMs: 3,
    });
    expect(await scrapeServed(lines('shard="a"'), "x_")).toBeUndefined();
  });

  it("leaves out a service whose metrics cannot be read", async () => {
    const gone = { url: `http://127.0.0.1:${await freePort()}/metrics`, prefix };
    const wrongPrefix = { url: `http://127.0.0.1:${server.port}/metrics`, prefix: "nope_" };
    expect(await scrapeGcTotals(gone)).toBeUndefined();
    expect(await scrapeGcTotals(wrongPrefix)).toBeUndefined();
    const window = watchWindowGc({ gone, wrongPrefix });
    await window.before();
    await window.after();
    expect(Object.keys(window.pauses())).toEqual(["bench"]);
  });
});
