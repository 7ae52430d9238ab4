import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import type { ShardLeases } from "../shards/leases.ts";
import { createRedisLeases } from "../shards/redis-leases.ts";
import { rendezvousAssign } from "../shards/rendezvous.ts";
import { waitFor } from "./contracts/fixture.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/*
 * Coordinators in their own processes on real Redis: a real kill -9 (no release, no leave, no
 * last word) and a real SIGTERM, read back from the engine itself.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHILD = path.join(ROOT, "test", "fixtures", "shard-coordinator-child.ts");
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const REDIS_URL = "redis://127.0.0.1:6379";
const PREFIX = `test-${Date.now().toString(36)}${randomBytes(3).toString("hex")}-proc:`;
const SHARDS = 64;
const TTL_MS = 2_000;
const admin = new Redis(REDIS_URL);

interface Acting {
  readonly node: string;
  readonly shard: number;
  readonly epoch: number;
  readonly from: number;
  to?: number;
}

interface Child {
  readonly id: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready: boolean;
  drained: boolean;
}

const acting: Acting[] = [];

function spawnNode(id: string): Child {
  const proc = spawn(process.execPath, ["--import", TSX_LOADER, CHILD, REDIS_URL, PREFIX, id, String(SHARDS), String(TTL_MS)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const child: Child = {
    id,
    proc,
    ready: false,
    drained: false,
    exited: new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal }))),
  };
  readline.createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    const [kind, a, b, c] = line.split(" ");
    if (kind === "ready") child.ready = true;
    else if (kind === "drained") child.drained = true;
    else if (kind === "owned") acting.push({ node: id, shard: Number(a), epoch: Number(b), from: Number(c) });
    else if (kind === "unowned") {
      const open = acting.find((h) => h.node === id && h.shard === Number(a) && h.to === undefined);
      if (open) open.to = Number(b);
    }
  });
  return child;
}

describe("shard coordinators in separate processes on Redis leases", () => {
  const children: Child[] = [];
  let leases: ShardLeases;
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill("SIGKILL");
    await leases?.close();
    await deleteRedisKeys(admin, PREFIX);
    await admin.quit();
  });

  it("kill -9: the dead node's shards are owned again within the lease + 1 s, at higher epochs; SIGTERM releases at once", async () => {
    leases = createRedisLeases({ redis: REDIS_URL, keyPrefix: PREFIX, ttlMs: TTL_MS });
    const engineOwners = async () => new Map((await leases.owners()).map((o) => [o.shard, o]));
    const settledAs = async (ids: string[]) => {
      const expected = rendezvousAssign(ids, SHARDS);
      const owners = await engineOwners();
      return (
        owners.size === SHARDS &&
        [...owners].every(([s, o]) => o.owner === expected[s]) &&
        expected.every((id, s) => acting.some((h) => h.node === id && h.shard === s && h.to === undefined))
      );
    };
    for (const id of ["proc-a", "proc-b", "proc-c"]) children.push(spawnNode(id));
    const [a, b, c] = children;
    await waitFor(() => children.every((ch) => ch.ready), "three coordinators started", 30_000);
    await waitFor(() => settledAs(["proc-a", "proc-b", "proc-c"]), "every shard owned as rendezvous hashing says", 15_000);
    const before = await engineOwners();
    const onC = [...before.values()].filter((o) => o.owner === "proc-c");
    expect(onC.length).toBeGreaterThan(0);

    c.proc.kill("SIGKILL");
    const killedAt = Date.now();
    expect((await c.exited).signal).toBe("SIGKILL");
    for (const h of acting) if (h.node === "proc-c" && h.to === undefined) h.to = killedAt; // its process is gone
    await waitFor(() => settledAs(["proc-a", "proc-b"]), "proc-c's shards owned again", TTL_MS + 1_000 + 2_000);
    // The bound is on when the survivors acted, as they logged it.
    const retaken = onC.map((o) => acting.find((h) => h.shard === o.shard && h.node !== "proc-c" && h.from >= killedAt));
    for (const h of retaken) expect(h).toBeDefined();
    expect(Math.max(...retaken.map((h) => (h?.from ?? Infinity) - killedAt))).toBeLessThanOrEqual(TTL_MS + 1_000);
    const after = await engineOwners();
    for (const o of onC) expect(after.get(o.shard)?.epoch).toBeGreaterThan(o.epoch);
    // Only proc-c's shards moved.
    for (const [s, o] of before) if (o.owner !== "proc-c") expect(after.get(s)?.owner).toBe(o.owner);

    const onB = [...after.values()].filter((o) => o.owner === "proc-b").map((o) => o.shard);
    b.proc.kill("SIGTERM");
    expect(await b.exited).toEqual({ code: 0, signal: null });
    expect(b.drained).toBe(true);
    // Released and left before it exited: nothing of proc-b is left to lapse.
    expect([...(await engineOwners()).values()].filter((o) => o.owner === "proc-b")).toEqual([]);
    expect((await leases.members()).map((m) => m.id)).toEqual(["proc-a"]);
    await waitFor(() => settledAs(["proc-a"]), "proc-a to own every shard", 10_000);
    for (const s of onB) expect(acting.some((h) => h.node === "proc-a" && h.shard === s && h.to === undefined)).toBe(true);

    // Never two nodes acting on one shard at once, nor at one epoch; epochs rise with each change of hands.
    const byShard = new Map<number, Acting[]>();
    for (const h of acting) byShard.set(h.shard, [...(byShard.get(h.shard) ?? []), h]);
    for (const [shard, held] of byShard) {
      const sorted = [...held].sort((x, y) => x.from - y.from);
      for (let i = 1; i < sorted.length; i++) {
        expect(sorted[i].from, `shard ${shard}: overlap`).toBeGreaterThanOrEqual(sorted[i - 1].to ?? Infinity);
        expect(sorted[i].epoch, `shard ${shard}: epoch`).toBeGreaterThan(sorted[i - 1].epoch);
      }
    }
    a.proc.kill("SIGTERM");
    expect((await a.exited).code).toBe(0);
  }, 90_000);
});
