import type { VariantResult } from "../scenario";
import { disturbed } from "./grpc-rig";

const variant = (name: string, other?: number): VariantResult => ({
  name,
  unit: "tasks",
  shape: "",
  concurrency: 1,
  units: 1,
  seconds: 1,
  perSecond: 1,
  cycles: 0,
  p50Ms: 0,
  p99Ms: 0,
  clientCpu: 0,
  ...(other === undefined ? {} : { processCpu: { shard: 0.9, other } }),
});

describe("disturbed", () => {
  it("names every variant whose window other work took more than a tenth of a core in", () => {
    expect(disturbed([variant("a", 0.02), variant("b", 0.5), variant("c", 1.2)])).toBe(
      "disturbed: other work used CPU during b 50%, c 120%",
    );
  });

  it("says nothing when other work stayed small or was not measured", () => {
    expect(disturbed([variant("a", 0.05), variant("b")])).toBeUndefined();
  });
});
