import * as fs from "node:fs";
import * as path from "node:path";
import { shardConfig } from "@codeq/shard";
import { routerConfig } from "./config";

/**
 * Every setting of the router and the shard worker has a row in its settings table
 * (docs/routing.md, docs/shard-worker.md), so a new setting cannot ship undocumented.
 */

const docs = (name: string) => fs.readFileSync(path.join(__dirname, "../../../docs", name), "utf8");
/** The first cell of each table row: the settings it names, in backquotes. */
const namedInTables = (text: string) =>
  new Set(
    text
      .split("\n")
      .filter((line) => line.startsWith("| `"))
      .flatMap((line) => [...line.split("|")[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)),
  );
const upperSnake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

test("the router's settings table names every setting (as its variable's suffix)", () => {
  const named = namedInTables(docs("routing.md"));
  const missing = Object.keys(routerConfig())
    .map(upperSnake)
    .filter((n) => !named.has(n));
  expect(missing).toEqual([]);
});

test("the shard worker's settings table names every setting", () => {
  const named = namedInTables(docs("shard-worker.md"));
  const missing = Object.keys(shardConfig()).filter((n) => !named.has(n));
  expect(missing).toEqual([]);
});
