import { spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
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

test("two processes are never handed the same port", async () => {
  // each child takes 300 ports, binds none of them and lives until both are done (a
  // process's ports are free for others once it exits); without the reservations, two
  // random draws of 300 from the span would share a port about 19 times in 20
  const built = path.resolve(__dirname, "../dist/free-port.js");
  const take = `const { freePort } = require(${JSON.stringify(built)});
    (async () => { const ports = []; for (let i = 0; i < 300; i++) ports.push(await freePort());
    console.log(JSON.stringify(ports)); process.stdin.resume(); })();`;
  const children = [0, 1].map(() =>
    spawn(process.execPath, ["-e", take], { stdio: ["pipe", "pipe", "inherit"] }),
  );
  try {
    const [a, b] = await Promise.all(
      children.map(
        (child) =>
          new Promise<number[]>((resolve, reject) => {
            let out = "";
            child.stdout!.on("data", (d: Buffer) => {
              out += d.toString();
              if (out.endsWith("\n")) resolve(JSON.parse(out) as number[]);
            });
            child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
          }),
      ),
    );
    expect(new Set(a).size).toBe(300);
    expect(new Set(b).size).toBe(300);
    expect(a!.filter((p) => b!.includes(p))).toEqual([]);
  } finally {
    for (const child of children) child.stdin!.end();
    await Promise.all(children.map((c) => (c.exitCode === null ? once(c, "exit") : undefined)));
  }
});
