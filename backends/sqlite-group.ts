import type Database from "better-sqlite3";
import type { WalSync } from "./sqlite-wal-sync.ts";

/** A write answered once committed, with its durability to come (`SqliteDb.writeVisible`). */
export interface Visible<T> {
  readonly value: T;
  /** Resolves once the commit is durable (at once with `sync: "normal"`); rejects if its sync failed. */
  readonly durable: Promise<void>;
}

/** One write waiting for its group commit (SqliteDb). */
export interface QueuedWrite {
  readonly fn: (db: Database.Database) => unknown;
  /** Wrap in a savepoint (several statements that must roll back together). */
  readonly savepoint: boolean;
  /** Answered at COMMIT with a `Visible` (its value and the commit's durability) instead of after the sync. */
  readonly visible: boolean;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

/** What one write of a committed group did. */
export type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

const DURABLE = Promise.resolve();

/**
 * Answers the writes of a group that committed: without a WAL sync (`normal`) all at once, as
 * durable; with one, visible writes now (with the group's `durable`) and the others once the sync
 * covering this commit returns (rejected if it failed). A write whose statements failed is rejected
 * with its own error either way.
 */
export function answerGroup(batch: readonly QueuedWrite[], outcomes: readonly Outcome[], walSync: WalSync | undefined): void {
  if (walSync === undefined) {
    batch.forEach((w, i) => answer(w, outcomes[i], DURABLE));
    return;
  }
  let synced!: (err?: Error) => void;
  const durable = new Promise<void>((resolve, reject) => (synced = (err) => (err === undefined ? resolve() : reject(err))));
  durable.catch(() => undefined); // a visible write's caller awaits it; none may be left unhandled
  batch.forEach((w, i) => {
    if (w.visible) answer(w, outcomes[i], durable);
  });
  walSync.after((syncError) => {
    synced(syncError);
    batch.forEach((w, i) => {
      if (!w.visible) answer(w, outcomes[i], durable, syncError);
    });
  });
}

function answer(w: QueuedWrite, outcome: Outcome, durable: Promise<void>, syncError?: Error): void {
  if (!outcome.ok) w.reject(outcome.error);
  else if (w.visible) w.resolve({ value: outcome.value, durable });
  else if (syncError !== undefined) w.reject(syncError);
  else w.resolve(outcome.value);
}
