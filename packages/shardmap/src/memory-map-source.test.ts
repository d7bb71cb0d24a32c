import { MemoryMapSource } from "./memory-map-source";
import { describeMapSource } from "./test/source-contract";

describeMapSource("MemoryMapSource", async ({ auditCap }) => {
  const source = new MemoryMapSource({ auditCap });
  return { open: () => source, close: () => source.close() };
});
