import * as fs from "node:fs";
import * as net from "node:net";
import { freePort } from "./free-port";

test("free ports come from below the kernel's ephemeral range, and can be bound", async () => {
  const [low] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/);
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  for (const port of ports) expect(port).toBeLessThan(Number(low));
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(ports[0], "127.0.0.1", resolve);
  });
  await new Promise((resolve) => server.close(resolve));
});

test("a process is never handed the same port twice, bound or not", async () => {
  // 600 draws from the span, none bound: without the memory of what was handed out,
  // about 15 of them would repeat a port
  const ports: number[] = [];
  for (let i = 0; i < 600; i++) ports.push(await freePort());
  expect(new Set(ports).size).toBe(600);
});

test("each jest worker draws from a slice of the span of its own", async () => {
  const [low] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/);
  const top = Number(low) - 1;
  const saved = process.env.JEST_WORKER_ID;
  const slices: Array<{ min: number; max: number }> = [];
  try {
    // workers 2 and 10 share a slice (8 of them); 3 has its own
    for (const worker of ["2", "3", "10"]) {
      process.env.JEST_WORKER_ID = worker;
      const ports: number[] = [];
      for (let i = 0; i < 40; i++) ports.push(await freePort());
      slices.push({ min: Math.min(...ports), max: Math.max(...ports) });
    }
  } finally {
    if (saved === undefined) delete process.env.JEST_WORKER_ID;
    else process.env.JEST_WORKER_ID = saved;
  }
  const [two, three, ten] = slices;
  expect(two!.max).toBeLessThanOrEqual(top - 1_500);
  expect(two!.min).toBeGreaterThan(top - 3_000);
  expect(three!.max).toBeLessThanOrEqual(top - 3_000);
  expect(three!.min).toBeGreaterThan(top - 4_500);
  expect(ten!.max).toBeLessThanOrEqual(top - 1_500);
  expect(ten!.min).toBeGreaterThan(top - 3_000);
});

test("a worker whose slice is used up draws from the whole span, never a port twice", async () => {
  const [low] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/);
  const saved = process.env.JEST_WORKER_ID;
  const ports: number[] = [];
  try {
    process.env.JEST_WORKER_ID = "8"; // a slice of 1,500 ports: 1,700 draws use it up
    for (let i = 0; i < 1_700; i++) ports.push(await freePort());
  } finally {
    if (saved === undefined) delete process.env.JEST_WORKER_ID;
    else process.env.JEST_WORKER_ID = saved;
  }
  expect(new Set(ports).size).toBe(ports.length);
  // none from the kernel's ephemeral range, which a client's connection may take
  expect(ports.filter((p) => p >= Number(low))).toEqual([]);
});
