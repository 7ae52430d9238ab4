import type { BusOptions, BusRecord, DeadLetter } from "./ingress-bus.ts";

export interface JournaledBusOptions extends BusOptions {
  /** Clock for enqueue times and ages (tests inject one). */
  readonly now?: () => number;
}

/** A record as a journal keeps it. */
export interface JournalEntry {
  readonly seq: number;
  readonly record: BusRecord;
  /** Failed deliveries so far (nacks); a delivery returned by a closing consumer is not one. */
  readonly attempts: number;
  readonly enqueuedAt: number;
}

/** An appended record: its sequence number once committed, and when the append is durable. */
export interface Appended {
  readonly seq: number;
  /** Resolves once the record survives what the journal promises (a power loss, for SQLite with `full`); rejects if that failed. */
  readonly durable: Promise<void>;
}

/**
 * Where a bus keeps its records. The delivery engine (journaled-bus.ts) holds the working set in memory and
 * tells the journal every state change; each promise resolves only once the change is durable, except
 * `append`'s, which resolves once the record is committed (recovered after a process crash), with its
 * durability to follow: the engine routes the record at once and answers the publisher only once it is durable.
 * Changes become durable in the order they were made.
 */
export interface BusJournal {
  /** Every record accepted and neither acked nor dead-lettered, oldest first. Called once, at open. */
  recover(): JournalEntry[];
  /** Resolves with the record's sequence number (increasing) once committed; `durable` follows. */
  append(record: BusRecord, enqueuedAt: number): Promise<Appended>;
  remove(seq: number): Promise<void>;
  setAttempts(seq: number, attempts: number): Promise<void>;
  /** Moves the record to the dead letters, atomically. */
  deadLetter(entry: JournalEntry, reason: string, deadAt: number): Promise<void>;
  deadLetterCount(): number;
  /** Newest first. */
  deadLetters(limit: number): Promise<DeadLetter[]>;
  /** Moves the named dead letters back to the records (attempts 0, new seqs), atomically; unknown ids are skipped. */
  revive(ids: readonly string[], enqueuedAt: number): Promise<JournalEntry[]>;
  /** Deletes the named dead letters; resolves with how many there were. */
  drop(ids: readonly string[]): Promise<number>;
  ready(): boolean;
}
