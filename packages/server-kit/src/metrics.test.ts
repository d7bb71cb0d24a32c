import { Registry } from "prom-client";
import { forceGcsInOneTurn } from "@codeq/testing";
import { collectProcessMetrics } from "./metrics";

/** The `_count` of `name`'s histogram for `kind`, 0 when it has none. */
async function gcCount(registry: Registry, name: string, kind: string): Promise<number> {
  const json = await registry.getSingleMetric(name)!.get();
  const sample = json.values.find(
    (v) => (v as { metricName?: string }).metricName === `${name}_count` && v.labels.kind === kind,
  );
  return sample?.value ?? 0;
}

describe("collectProcessMetrics", () => {
  it("counts every GC pause, also those Node reports together", async () => {
    const registry = new Registry();
    collectProcessMetrics(registry, "t_");
    const name = "t_nodejs_gc_duration_seconds";
    const before = await gcCount(registry, name, "minor");
    // prom-client's own histogram counted these six as one
    await forceGcsInOneTurn(5);
    expect((await gcCount(registry, name, "minor")) - before).toBeGreaterThanOrEqual(5);
    expect(await gcCount(registry, name, "major")).toBeGreaterThanOrEqual(1);
    // the rest of Node's process metrics are there, under the prefix
    expect(registry.getSingleMetric("t_process_cpu_seconds_total")).toBeDefined();
  });
});
