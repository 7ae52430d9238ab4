import { createActor, type AnyActorRef } from "xstate";
import { shardMachine, type ShardActor, type ShardEvent } from "../actors/shard/machine.ts";
import type { Urn } from "../core/urn.ts";
import { shardOf, type ShardDirectory, type ShardOwner } from "./directory.ts";
import { ShardCountMismatch, type ShardLeases, type ShardNode } from "./leases.ts";
import { rendezvousAssign } from "./rendezvous.ts";

export interface CoordinatorOptions {
  readonly leases: ShardLeases;
  readonly shardCount: number;
  readonly nodeId: string;
  /** This node's ROUTING_PUBLIC_URL; read at every heartbeat (the HTTP port may be bound later). */
  readonly url: () => string;
  /** How often membership and owners are read and free shards taken; default ttl/20 within 50..250 ms. */
  readonly pollMs?: number;
  readonly now?: () => number;
  readonly log?: { info(msg: string): void; warn(obj: object, msg: string): void };
  /** Hears the number of shards this node owns after every change (the gauge). */
  readonly onOwnedCount?: (count: number) => void;
}

/** What the operators see (`shards` REPL command): the last view of the engine. */
export interface ShardsView {
  readonly shardCount: number;
  readonly engine: string;
  readonly nodeId: string;
  /** The engine answered the last poll. */
  readonly healthy: boolean;
  readonly members: readonly ShardNode[];
  readonly owners: readonly ShardOwner[];
}

export interface ShardCoordinator extends ShardDirectory {
  /** Claims the shard count (rejects with ShardCountMismatch), joins, and takes its first shards. */
  start(): Promise<void>;
  /** SIGTERM: stop acting as owner, leave the membership and release every lease, so others take them at once. */
  drain(): Promise<void>;
  /** Stops every timer without releasing anything (what kill -9 leaves behind; tests). */
  halt(): void;
  /** Drains if not done, then closes the engine connection. */
  close(): Promise<void>;
  /** Started, not draining, and the engine answered the last poll. */
  ready(): boolean;
  view(): ShardsView;
  /** Polls now (instead of waiting for the timer). */
  poll(): Promise<void>;
}

/**
 * The coordinator of one node: one ownership machine per shard (actors/shard/machine.ts), driven by
 * a poll of the engine. Each poll refreshes this node's membership, reads the live members and
 * leases, and for every shard: rendezvous hashing over the live members names the node it belongs
 * to; a free shard that belongs here is acquired; an owned shard that now belongs to another live
 * node is released (handover); a lease still held under this node's id while its machine is not
 * owning (a late answer, a restart with the same id) is released, so it never blocks anyone.
 */
export function createShardCoordinator(opts: CoordinatorOptions): ShardCoordinator {
  const { leases, shardCount, nodeId } = opts;
  const now = opts.now ?? Date.now;
  const ttl = leases.ttlMs;
  const pollMs = opts.pollMs ?? Math.max(50, Math.min(250, Math.floor(ttl / 20)));
  // Stop this much before the lease could lapse at the engine (clock rate differences, event loop delays).
  const marginMs = Math.min(250, Math.floor(ttl / 10));
  const owned = new Map<number, number>();
  const listeners = new Set<(shard: number, owned: boolean) => void>();
  const tokens = new Array<number>(shardCount).fill(0);
  let members: ShardNode[] = [];
  let owners = new Map<number, ShardOwner>();
  let assigned: { key: string; owners: (string | undefined)[] } = { key: "", owners: [] };
  let healthy = false;
  let lastBeat = -Infinity;
  let lastUrl = "";
  let started = false;
  let draining = false;
  let halted = false;
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let warned = false;
  const me = (): ShardNode => ({ id: nodeId, url: opts.url() });

  const notify = (shard: number, isOwned: boolean) => {
    opts.onOwnedCount?.(owned.size);
    for (const l of listeners) {
      try {
        l(shard, isOwned);
      } catch (err) {
        opts.log?.warn({ err, shard }, "shard listener failed");
      }
    }
  };

  /** Runs one engine call for `shard`; its answer reaches the actor only if no later call was made for that shard. */
  const effect = <T>(shard: number, call: () => Promise<T>, answer: (result: T) => ShardEvent) => {
    if (halted) return;
    const token = ++tokens[shard];
    // A stopped actor (drained) has nothing left to hear.
    const current = () => !halted && tokens[shard] === token && actors[shard].getSnapshot().status === "active";
    call().then(
      (result) => {
        if (current()) actors[shard].send(answer(result));
      },
      (err: unknown) => {
        if (!current()) return;
        // One warning per outage, not one per shard and retry (the poll says when it is over).
        if (!warned) opts.log?.warn({ err, shard }, `shard lease call failed (${leases.engine}); owned shards are kept until their leases lapse`);
        warned = true;
        actors[shard].send({ type: "shard.failed" });
      },
    );
  };
  // The local deadline of each lease, read by ownsShard itself: a timer that fires late (a stalled
  // event loop) must not stretch ownership past it.
  const validUntil = new Array<number>(shardCount).fill(0);
  const validFrom = (shard: number, sentAt: number) => {
    validUntil[shard] = sentAt + ttl - marginMs;
    return validUntil[shard] - now();
  };

  const machine = shardMachine.provide({
    actions: {
      acquire: (_, { shard }) => {
        const sentAt = now();
        effect(
          shard,
          () => leases.acquire(shard, me()),
          (got): ShardEvent => (got ? { type: "shard.acquired", epoch: got.epoch, validForMs: validFrom(shard, sentAt) } : { type: "shard.taken" }),
        );
      },
      renew: (_, { shard, epoch }) => {
        const sentAt = now();
        effect(
          shard,
          () => leases.renew(shard, nodeId, epoch),
          (ok): ShardEvent => (ok ? { type: "shard.renewed", validForMs: validFrom(shard, sentAt) } : { type: "shard.lost" }),
        );
      },
      release: (_, { shard, epoch }) =>
        effect(
          shard,
          () => leases.release(shard, nodeId, epoch),
          (): ShardEvent => ({ type: "shard.released" }),
        ),
      owned: (_, { shard, epoch }) => {
        owned.set(shard, epoch);
        notify(shard, true);
      },
      unowned: (_, { shard }) => {
        if (!owned.delete(shard)) return;
        notify(shard, false);
      },
    },
  });
  const renewEveryMs = Math.floor(ttl / 3);
  const retryEveryMs = Math.max(20, Math.min(250, Math.floor(ttl / 10)));
  const actors: ShardActor[] = Array.from({ length: shardCount }, (_, shard) => createActor(machine, { input: { shard, renewEveryMs, retryEveryMs } }));

  async function pollOnce(): Promise<void> {
    if (halted) return;
    let live: ShardNode[];
    let held: ShardOwner[];
    try {
      // A beat every quarter lease is plenty (a record lapses after a whole one), not one per poll.
      // (and at once when the url changed: the HTTP port is bound after the coordinator starts).
      const self = me();
      if (!draining && (now() - lastBeat >= ttl / 4 || self.url !== lastUrl)) {
        const at = now();
        await leases.heartbeat(self);
        lastBeat = at;
        lastUrl = self.url;
      }
      [live, held] = await Promise.all([leases.members(), leases.owners()]);
    } catch (err) {
      if (!warned) opts.log?.warn({ err }, `shard coordinator cannot reach ${leases.engine}; owned shards are kept until their leases lapse`);
      warned = true;
      healthy = false;
      return;
    }
    if (warned) opts.log?.info(`shard coordinator reaches ${leases.engine} again`);
    warned = false;
    healthy = true;
    members = live;
    owners = new Map(held.map((o) => [o.shard, o]));
    if (draining || halted) return;
    const ids = live.map((m) => m.id);
    if (!ids.includes(nodeId)) ids.push(nodeId);
    const key = ids.sort().join("\n");
    // Hashing every shard against every member is only redone when the membership changes.
    if (key !== assigned.key) assigned = { key, owners: rendezvousAssign(ids, shardCount) };
    for (let shard = 0; shard < shardCount; shard++) {
      const actor = actors[shard];
      const snap = actor.getSnapshot();
      const mine = assigned.owners[shard] === nodeId;
      const lease = owners.get(shard);
      if (snap.matches("standby")) {
        if (lease?.owner === nodeId)
          effect(
            shard,
            () => leases.release(shard, nodeId, lease.epoch),
            () => ({ type: "shard.released" }),
          );
        else if (mine && !lease) actor.send({ type: "shard.assigned" });
      } else if (snap.matches("owning") && !mine) {
        actor.send({ type: "shard.unassigned" });
      }
    }
  }

  const poll = (): Promise<void> => (polling ??= pollOnce().finally(() => (polling = undefined)));

  const allStopped = (): Promise<void> =>
    Promise.all(
      actors.map(
        (a: AnyActorRef) =>
          new Promise<void>((resolve) => (a.getSnapshot().status === "done" ? resolve() : a.subscribe({ complete: resolve, error: () => resolve() }))),
      ),
    ).then(() => {});

  let drained: Promise<void> | undefined;
  const drain = (): Promise<void> =>
    (drained ??= (async () => {
      draining = true;
      clearInterval(timer);
      if (halted || !started) return;
      for (const a of actors) a.send({ type: "shard.stop" });
      await Promise.race([allStopped(), new Promise<void>((r) => setTimeout(r, ttl).unref())]);
      await leases.leave(nodeId).catch((err: unknown) => opts.log?.warn({ err }, "leaving the shard membership failed; the record lapses by TTL"));
    })());

  return {
    shardCount,
    shardOf: (urn: Urn | string) => shardOf(urn, shardCount),
    ownsShard: (shard) => owned.has(shard) && now() < validUntil[shard],
    ownerOf(shard) {
      const epoch = owned.get(shard);
      if (epoch !== undefined && now() < validUntil[shard]) return { shard, owner: nodeId, url: opts.url(), epoch };
      const lease = owners.get(shard);
      if (!lease || lease.owner === nodeId) return undefined;
      // The member record has the owner's current url (its port may have been bound after it acquired,
      // so the lease's own url may name port 0). A holder that is no longer a member is dying: its lease
      // is about to lapse, and there is no url to send anyone to yet.
      const holder = members.find((m) => m.id === lease.owner);
      return holder === undefined ? undefined : { ...lease, url: holder.url };
    },
    ownedShards: () => [...owned.keys()].filter((shard) => now() < validUntil[shard]).sort((a, b) => a - b),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async start() {
      // The engine may be slow to answer the very first call (connecting): a few tries, then fail the start.
      let recorded: number | undefined;
      for (let attempt = 1; recorded === undefined; attempt++) {
        try {
          recorded = await leases.claimShardCount(shardCount);
        } catch (err) {
          if (attempt >= 5) throw new Error(`cannot reach ${leases.engine} to join the shard coordination`, { cause: err });
          await new Promise((r) => setTimeout(r, pollMs));
        }
      }
      if (recorded !== shardCount) throw new ShardCountMismatch(shardCount, recorded, leases.engine);
      for (const a of actors) a.start();
      started = true;
      await poll();
      // Wait for the first acquisitions to be answered (a single node owns everything when ready).
      await Promise.race([
        Promise.all(
          actors.map(
            (a) =>
              new Promise<void>((resolve) => {
                const settled = () => !a.getSnapshot().matches("acquiring");
                if (settled()) return resolve();
                const sub = a.subscribe(() => {
                  if (settled()) {
                    sub.unsubscribe();
                    resolve();
                  }
                });
              }),
          ),
        ),
        new Promise<void>((r) => setTimeout(r, ttl).unref()),
      ]);
      timer = setInterval(() => void poll(), pollMs);
      timer.unref();
    },
    drain,
    halt() {
      halted = true;
      clearInterval(timer);
      for (const a of actors) a.stop();
      owned.clear();
    },
    async close() {
      await drain();
      await leases.close();
    },
    ready: () => started && !draining && !halted && healthy,
    view: () => ({ shardCount, engine: leases.engine, nodeId, healthy, members, owners: [...owners.values()].sort((a, b) => a.shard - b.shard) }),
    poll,
  };
}
