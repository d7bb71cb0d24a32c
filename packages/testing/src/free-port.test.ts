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
