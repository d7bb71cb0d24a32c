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
