import fc from "fast-check";
import type { CallOptions } from "nice-grpc";
import { TASK_ID_PATTERN } from "@codeq/engine";
import type { LeaseStreamRequest, LeaseStreamResponse } from "@codeq/proto";
import {
  expectAdmin,
  expectItem,
  expectOwnOnly,
  expectSettlement,
  expectValidCommand,
} from "./fuzz-expect";
import { collect, each, rpc, sum, type AnyRpc, type FuzzCluster } from "./fuzz-fixture";
import * as I from "./fuzz-inputs";
import { attacker, attackerAdmin, TWELVE_HOURS, type Caller } from "./fuzz-settings";

/**
 * The QueueService RPCs as the router's fuzz tests send them: hostile input from
 * another tenant, and what a success may contain (the caller's own data only).
 */

/** In the order they are fuzzed. */
export const QUEUE_RPCS = [
  "Enqueue",
  "EnqueueBatch",
  "EnqueueStream",
  "GetTask",
  "QueueStats", // before any lease of the attacker's can expire: its counts hold still
  "ListDead",
  "RedriveDead",
  "PurgeDead",
  "Ack",
  "Nack",
  "Extend",
  "Lease",
  "LeaseStream",
];

const names = () => I.hostileName(["AQ", "VQ", "VB"]);
const b64url = (s: string) => Buffer.from(s, "utf8").toString("base64url");

export function queueRpcs(fx: FuzzCluster): Record<string, AnyRpc> {
  const { seeded } = fx;
  const token = I.hostileToken(fx.material());
  const victimIds = seeded.tasks.map((t) => t.id);
  const deadTrio = [attacker, attackerAdmin];
  const taskIds = (n: number) =>
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc.array(
          fc.oneof(fc.constantFrom(...seeded.deadIds), fc.constantFrom(...victimIds), names()),
          { maxLength: 5 },
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constant(
          Array.from({ length: n }, (_, i) => victimIds[i % victimIds.length]!),
        ),
      },
      { weight: 1, arbitrary: fc.constant(Array.from({ length: n + 1 }, () => "x")) },
    );
  const checkDead = (
    res: { notFound: string[] },
    req: { command?: string; taskIds?: string[] },
    who: Caller,
  ) => {
    expectAdmin(who);
    expectValidCommand(req.command);
    for (const id of req.taskIds ?? [])
      if (victimIds.includes(id)) expect(res.notFound).toContain(id);
  };
  return {
    Enqueue: rpc({
      callers: [attacker],
      request: I.enqueueRequest(names()),
      call: (req, o) => fx.q.enqueue(req, o),
      check: async (res, req, who) => {
        expectValidCommand(req.command);
        expect(res.taskId).toMatch(TASK_ID_PATTERN);
        const stored = await Promise.all(
          [...fx.rc.workers.values()].map((w) =>
            w.engine.getTask({ command: req.command!, tenant: who.tenant }, res.taskId),
          ),
        );
        expect(stored.some((t) => t !== undefined)).toBe(true);
      },
      // valid names that are also properties of every JavaScript object
      examples: [
        [attacker, { command: "__proto__" }],
        [attacker, { command: "constructor" }],
      ],
    }),
    EnqueueBatch: rpc({
      callers: [attacker],
      request: I.enqueueBatch(I.enqueueRequest(names())).map((tasks) => ({ tasks })),
      call: (req, o) => fx.q.enqueueBatch(req, o),
      check: (res, req) => {
        expect(res.results).toHaveLength(req.tasks.length);
        res.results.forEach((r, i) => expectItem(`results[${i}]`, r.status));
      },
    }),
    EnqueueStream: rpc({
      callers: [attacker],
      request: fc
        .array(I.enqueueBatch(I.enqueueRequest(names())), { minLength: 1, maxLength: 3 })
        .map((batches) => batches.map((tasks, i) => ({ seq: i + 1, tasks }))),
      call: (reqs, o) => collect(fx.q.enqueueStream(each(reqs), o)),
      check: (res, reqs) => {
        expect(res.map((r) => r.seq).sort()).toEqual(reqs.map((r) => r.seq));
        for (const r of res) {
          expect(r.results).toHaveLength(reqs[r.seq - 1]!.tasks.length);
          r.results.forEach((x, i) => expectItem(`seq ${r.seq} results[${i}]`, x.status));
        }
      },
    }),
    GetTask: rpc({
      callers: [attacker],
      request: fc.record({
        command: names(),
        taskId: fc.oneof(
          fc.constantFrom(...victimIds),
          fc.constantFrom(...victimIds).map((id) => id.toLowerCase()),
          names(),
          fc.constantFrom("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
        ),
      }),
      call: (req, o) => fx.q.getTask(req, o),
      check: (res, req, who) => {
        expect(res.task?.tenant).toBe(who.tenant);
        expect(res.task?.id).toBe(req.taskId);
      },
    }),
    QueueStats: rpc({
      callers: [attacker],
      request: fc.record({ command: names() }),
      call: (req, o) => fx.q.queueStats(req, o),
      check: async (res, req, who) => {
        expectValidCommand(req.command);
        expect(sum(res.total)).toBe(await fx.heldBy(who.tenant, req.command));
      },
    }),
    ListDead: rpc({
      callers: deadTrio,
      request: fc.record({
        command: names(),
        pageSize: I.u32(1000, 1001),
        pageToken: I.pageToken,
      }),
      call: (req, o) => fx.q.listDead(req, o),
      check: (res, req, who) => {
        expectAdmin(who);
        expectValidCommand(req.command);
        expectOwnOnly(res.tasks, who.tenant, "ListDead");
      },
      // a page token naming a shard past the caller's last one
      examples: [[attacker, { command: "VQ", pageSize: 0, pageToken: b64url("r1.1.") }]],
    }),
    RedriveDead: rpc({
      callers: deadTrio,
      request: fc.record(
        {
          command: names(),
          taskIds: taskIds(1000),
          maxTasks: I.u32(1000, 1001),
          ratePerSecond: I.u32(100_000, 100_001),
        },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => fx.q.redriveDead(req, o),
      check: checkDead,
      // ids that are not dead tasks of the caller, redriven at one a second
      examples: [
        [attackerAdmin, { command: "AQ", taskIds: victimIds.slice(0, 30), ratePerSecond: 1 }],
      ],
    }),
    PurgeDead: rpc({
      callers: deadTrio,
      request: fc.record(
        { command: names(), taskIds: taskIds(10_000), maxTasks: I.u32(10_000, 10_001) },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => fx.q.purgeDead(req, o),
      check: checkDead,
    }),
    Ack: rpc({
      callers: [attacker],
      request: I.ackItems(token).map((items) => ({ items })),
      call: (req, o) => fx.q.ack(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((s, i) => {
          const item = req.items[i]!;
          const big = (item.result?.length ?? 0) > 1024 * 1024;
          expectSettlement(`items[${i}]`, item.leaseToken ?? "", s, who, big);
        });
      },
      examples: [
        [
          attacker,
          {
            items: [
              { leaseToken: seeded.attackerTokens[0]!, result: new Uint8Array(1024 * 1024 + 1) },
            ],
          },
        ],
      ],
    }),
    Nack: rpc({
      callers: [attacker],
      request: I.nackItems(token).map((items) => ({ items })),
      call: (req, o) => fx.q.nack(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((s, i) =>
          expectSettlement(`items[${i}]`, req.items[i]!.leaseToken ?? "", s, who),
        );
      },
    }),
    Extend: rpc({
      callers: [attacker],
      request: I.extendItems(token).map((items) => ({ items })),
      call: (req, o) => fx.q.extend(req, o),
      check: (res, req, who) => {
        expect(res.results).toHaveLength(req.items.length);
        res.results.forEach((r, i) =>
          expectSettlement(`items[${i}]`, req.items[i]!.leaseToken ?? "", r.status, who),
        );
      },
    }),
    Lease: rpc({
      callers: [attacker],
      request: fc.record(
        {
          commands: I.commandList(names()),
          maxTasks: I.u32(1000, 1001),
          // valid waits stay short: a long poll on an empty queue is no hang
          waitMs: fc.constantFrom(0, 1, 20, 30_001, 2 ** 31, 2 ** 32 - 1),
          leaseDurationMs: I.u32(999, 1000, TWELVE_HOURS, TWELVE_HOURS + 1),
          allTenants: fc.boolean(),
        },
        { requiredKeys: ["commands"] },
      ),
      call: (req, o) => fx.q.lease(req, o),
      check: (res, req, who) => {
        expect(req.allTenants ?? false).toBe(false);
        expect(res.tasks.length).toBeLessThanOrEqual(Math.max(1, req.maxTasks ?? 0));
        expectOwnOnly(res.tasks, who.tenant, "Lease");
      },
      examples: [[attacker, { commands: ["AQ"], waitMs: 2 ** 31 }]],
    }),
    LeaseStream: rpc({
      callers: [attacker],
      request: leaseScript(names(), token),
      call: (script, o) => converse(fx, script, o),
      check: (res, script, who) => {
        expect(res.filter((r) => r.subscribed).length).toBeLessThanOrEqual(1);
        const pushed = res.flatMap((r) => r.tasks?.tasks ?? []);
        expectOwnOnly(pushed, who.tenant, "LeaseStream");
        // each credit is used by a pushed task or taken back, never both
        const granted = script.reduce((n, m) => n + (m.credits ?? 0), 0);
        const withdrawn = res.flatMap((r) => (r.withdrawn ? [r.withdrawn] : []));
        for (const w of withdrawn) expect(script[w.requestId - 1]?.withdrawCredits).toBe(true);
        const taken = withdrawn.reduce((n, w) => n + w.credits, 0);
        expect(pushed.length + taken).toBeLessThanOrEqual(granted);
        for (const r of res) {
          if (!r.settled) continue;
          const sent = script[r.settled.requestId - 1]!;
          const { acks, nacks, extends: ext } = r.settled;
          acks.forEach((s, i) =>
            expectSettlement(`acks[${i}]`, sent.acks![i]!.leaseToken!, s, who),
          );
          nacks.forEach((s, i) =>
            expectSettlement(`nacks[${i}]`, sent.nacks![i]!.leaseToken!, s, who),
          );
          ext.forEach((x, i) =>
            expectSettlement(`extends[${i}]`, sent.extends![i]!.leaseToken!, x.status, who),
          );
        }
      },
    }),
  };
}

/**
 * Sends a LeaseStream script message by message; after one with settlements, waits for
 * their answer (every such message is answered) before the next, and half-closes last.
 */
async function converse(
  fx: FuzzCluster,
  script: readonly Partial<LeaseStreamRequest>[],
  o: CallOptions,
): Promise<LeaseStreamResponse[]> {
  const out: LeaseStreamResponse[] = [];
  const waiting = new Map<number, () => void>();
  let ended = false;
  async function* requests() {
    for (const m of script) {
      yield m;
      const settles = (m.acks?.length ?? 0) + (m.nacks?.length ?? 0) + (m.extends?.length ?? 0);
      if (settles > 0 && !ended)
        await new Promise<void>((resolve) => waiting.set(m.requestId!, resolve));
    }
  }
  try {
    for await (const res of fx.q.leaseStream(requests(), o)) {
      out.push(res);
      if (res.settled) waiting.get(res.settled.requestId)?.();
    }
  } finally {
    ended = true;
    for (const resolve of waiting.values()) resolve();
  }
  return out;
}

/** A LeaseStream conversation: a first message (mostly with subscribe), then a few more. */
function leaseScript(names: fc.Arbitrary<string>, token: fc.Arbitrary<string>) {
  const rest = fc.record(
    {
      subscribe: fc.oneof(
        { weight: 5, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: I.subscription(names) },
      ),
      credits: I.u32(10_000, 10_001),
      withdrawCredits: fc.boolean(),
      acks: I.ackItems(token),
      nacks: I.nackItems(token),
      extends: I.extendItems(token),
    },
    { requiredKeys: [] },
  );
  const first = fc.record(
    {
      subscribe: fc.option(I.subscription(names), { nil: undefined, freq: 5 }),
      credits: I.u32(10_000),
      withdrawCredits: fc.boolean(),
    },
    { requiredKeys: [] },
  );
  return fc
    .tuple(first, fc.array(rest, { maxLength: 3 }))
    .map(([head, tail]) => [head, ...tail].map((m, i) => ({ ...m, requestId: i + 1 })))
    .map((script) => script as Partial<LeaseStreamRequest>[]);
}
