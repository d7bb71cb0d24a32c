import fc from "fast-check";
import { NAME_PATTERN, SHARD_ID_PATTERN } from "@codeq/engine";
import type { ShardState } from "@codeq/proto";
import { expectValidCommand } from "./fuzz-expect";
import { rpc, type AnyRpc, type FuzzCluster } from "./fuzz-fixture";
import * as I from "./fuzz-inputs";
import { admin, KEEP } from "./fuzz-settings";

/**
 * The AdminService RPCs as the router's fuzz tests send them: hostile input from an
 * admin, and what a success may have done (nothing to the victim's queues or shards).
 */

/** In the order they are fuzzed. */
export const ADMIN_RPCS = [
  "GetMigration",
  "ListMigrations",
  "AbortMigration",
  "VerifyMigration",
  "ListAuditEvents",
  "RegisterShard",
  "RemoveShard",
  "SetShardState",
  "SetDefaultShard",
  "AssignCommand",
];

/** A 100 KB name: an answer that repeats it no longer fits in an HTTP/2 header block. */
const HUGE = "x".repeat(100_000);

/**
 * Shards the RegisterShard fuzzing added (removing one of them may succeed). Jest
 * loads this module afresh for each test file, so the set is per cluster.
 */
const registered = new Set<string>();

export function adminRpcs(fx: FuzzCluster): Record<string, AnyRpc> {
  const unkept = I.hostileName().filter((c) => !KEEP.has(c));
  const shardId = fc.oneof(fc.constantFrom("a", "b", "c", "zz-1"), I.hostileName());
  // any shard id but b, which serves: it could take the default, or be set draining
  const notB = fc
    .oneof(fc.constantFrom("a", "c", "zz-1"), I.hostileName())
    .filter((id) => id !== "b");
  return {
    AssignCommand: rpc({
      callers: [admin],
      request: fc.record(
        {
          command: unkept,
          tenant: fc.oneof(fc.constantFrom("", "victim", "attacker"), I.hostileName()),
          shard: shardId,
          dryRun: fc.boolean(),
          expectedVersion: fc.oneof(fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER), fc.nat()),
        },
        { requiredKeys: ["command"] },
      ),
      call: (req, o) => fx.a.assignCommand(req, o),
      check: (res, req) => {
        expectValidCommand(req.command);
        if (req.tenant) expect(req.tenant).toMatch(NAME_PATTERN);
        // a, b, or a shard the RegisterShard fuzzing added before
        expect(["a", "b", ...registered]).toContain(req.shard);
      },
      examples: [[admin, { command: "ZZ", shard: HUGE }]],
    }),
    GetMigration: rpc({
      callers: [admin],
      request: fc.record({ id: I.hostileName() }),
      call: (req, o) => fx.a.getMigration(req, o),
      check: (res, req) => expect(res.migration?.id).toBe(req.id),
      examples: [[admin, { id: HUGE }]],
    }),
    ListMigrations: rpc({
      callers: [admin],
      request: fc.record(
        {
          includeFinished: fc.boolean(),
          command: I.hostileName(),
          pageSize: I.u32(1000, 1001),
          pageToken: I.pageToken,
        },
        { requiredKeys: [] },
      ),
      call: (req, o) => fx.a.listMigrations(req, o),
      check: (res, req) => {
        expect(res.migrations.length).toBeLessThanOrEqual(req.pageSize || 100);
        expect(res.nextPageToken.length).toBeLessThan(1000);
      },
    }),
    AbortMigration: rpc({
      callers: [admin],
      request: fc.record({ id: I.hostileName() }),
      call: (req, o) => fx.a.abortMigration(req, o),
      check: (res, req) => expect(res.migration?.id).toBe(req.id),
      examples: [[admin, { id: HUGE }]],
    }),
    VerifyMigration: rpc({
      callers: [admin],
      request: fc.record({ id: I.hostileName() }),
      call: (req, o) => fx.a.verifyMigration(req, o),
      check: (res, req) => expect(res.migration?.id).toBe(req.id),
      examples: [[admin, { id: HUGE }]],
    }),
    RegisterShard: rpc({
      callers: [admin],
      request: fc.record(
        {
          shard: fc.option(
            fc.record(
              {
                id: shardId,
                endpoint: fc.oneof(
                  fc.constantFrom("127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:65536", ":1", "h:"),
                  fc.constantFrom("[::1]:1", "a b:1", "127.0.0.1:1\n", "x".repeat(100_000)),
                  I.hostileName(),
                ),
                state: fc.constantFrom(0, 1, 2, 3, 99).map((n) => n as ShardState),
              },
              { requiredKeys: [] },
            ),
            { nil: undefined },
          ),
        },
        { requiredKeys: [] },
      ),
      call: (req, o) => fx.a.registerShard(req, o),
      check: (res, req) => {
        expect(req.shard?.id ?? "").toMatch(SHARD_ID_PATTERN);
        expect(req.shard?.endpoint ?? "").toMatch(/^\S+:[0-9]{1,5}$/);
        expect(["a", "b"]).not.toContain(req.shard?.id);
        registered.add(req.shard!.id!);
      },
    }),
    RemoveShard: rpc({
      callers: [admin],
      request: fc.record({ id: shardId }),
      call: (req, o) => fx.a.removeShard(req, o),
      // a holds the default and b a mapping, so only a shard registered here may go
      check: (res, req) => {
        if (!registered.has(req.id))
          throw new Error(`removed ${JSON.stringify(req.id.slice(0, 60))}, never registered here`);
      },
      examples: [
        [admin, { id: "constructor" }],
        [admin, { id: HUGE }],
      ],
    }),
    SetDefaultShard: rpc({
      callers: [admin],
      request: fc.record(
        {
          shard: notB,
          dryRun: fc.boolean(),
        },
        { requiredKeys: ["shard"] },
      ),
      call: (req, o) => fx.a.setDefaultShard(req, o),
      // a is the default: naming it again changes nothing; a shard registered here has
      // no worker to serve it
      check: (res, req) => {
        expect(req.shard).toBe("a");
        expect(res).toMatchObject({ previous: "a", pinned: [], migrations: [] });
      },
      examples: [[admin, { shard: HUGE }]],
    }),
    SetShardState: rpc({
      callers: [admin],
      request: fc.record(
        {
          id: notB,
          state: fc.constantFrom(0, 1, 2, 3, 99).map((n) => n as ShardState),
        },
        { requiredKeys: ["id"] },
      ),
      call: (req, o) => fx.a.setShardState(req, o),
      // a (the default) may only stay active; a shard registered here may change
      check: (res, req) => {
        expect([1, 2]).toContain(req.state);
        if (!registered.has(req.id)) expect(req).toEqual({ id: "a", state: 1 });
      },
      examples: [[admin, { id: HUGE, state: 2 as ShardState }]],
    }),
    ListAuditEvents: rpc({
      callers: [admin],
      request: fc.record(
        { pageSize: I.u32(1000, 1001), pageToken: I.pageToken },
        { requiredKeys: [] },
      ),
      call: (req, o) => fx.a.listAuditEvents(req, o),
      check: (res, req) => expect(res.events.length).toBeLessThanOrEqual(req.pageSize || 100),
    }),
  };
}
