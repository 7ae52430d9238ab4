import type Database from "better-sqlite3";

/**
 * Schema versions in order; `PRAGMA user_version` records how many have been applied.
 * Append only: an applied migration is never edited.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE bus_records (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    is_ephemeral INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    envelope     TEXT    NOT NULL,
    accepted_at  INTEGER NOT NULL,
    path         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    enqueued_at  INTEGER NOT NULL
  );
  CREATE TABLE bus_dead_letters (
    seq          INTEGER PRIMARY KEY,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    is_ephemeral INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    envelope     TEXT    NOT NULL,
    accepted_at  INTEGER NOT NULL,
    path         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    dead_at      INTEGER NOT NULL
  );
  CREATE INDEX bus_dead_letters_dead_at ON bus_dead_letters (dead_at);

  CREATE TABLE mailbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    high         INTEGER GENERATED ALWAYS AS (priority >= 5) VIRTUAL,
    envelope     TEXT    NOT NULL,
    queued_at    INTEGER NOT NULL,
    UNIQUE (recipient_id, message_id)
  );
  CREATE INDEX mailbox_fetch ON mailbox (recipient_id, high DESC, seq);
  CREATE TABLE mailbox_dedup (
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (recipient_id, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX mailbox_dedup_expires_at ON mailbox_dedup (expires_at);

  CREATE TABLE device_tokens (
    token         TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    platform      TEXT    NOT NULL,
    registered_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX device_tokens_owner ON device_tokens (owner);

  CREATE TABLE push_queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    due_at       INTEGER NOT NULL
  );
  `,
  // 2: push dead letters (issue 6).
  `
  CREATE TABLE push_dead_letters (
    seq          INTEGER PRIMARY KEY,
    recipient_id TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    dead_at      INTEGER NOT NULL
  );
  CREATE INDEX push_dead_letters_dead_at ON push_dead_letters (dead_at);
  `,
  // 3: data life cycle (issue 21). Retention deletes by queued_at through its index; the per-recipient
  // usage (the quota's depth) is kept by triggers, so every insert and delete of a message (store, ack,
  // expiry, purge) updates it in the same transaction, and a quota check is one primary-key read.
  `
  CREATE INDEX mailbox_queued_at ON mailbox (queued_at);
  CREATE TABLE mailbox_usage (
    recipient_id TEXT    PRIMARY KEY,
    count        INTEGER NOT NULL,
    bytes        INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX mailbox_usage_count ON mailbox_usage (count);
  INSERT INTO mailbox_usage (recipient_id, count, bytes)
    SELECT recipient_id, count(*), sum(length(CAST(envelope AS BLOB))) FROM mailbox GROUP BY recipient_id;
  CREATE TRIGGER mailbox_usage_insert AFTER INSERT ON mailbox BEGIN
    INSERT INTO mailbox_usage (recipient_id, count, bytes) VALUES (new.recipient_id, 1, length(CAST(new.envelope AS BLOB)))
      ON CONFLICT (recipient_id) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
  END;
  CREATE TRIGGER mailbox_usage_delete AFTER DELETE ON mailbox BEGIN
    UPDATE mailbox_usage SET count = count - 1, bytes = bytes - length(CAST(old.envelope AS BLOB)) WHERE recipient_id = old.recipient_id;
    DELETE FROM mailbox_usage WHERE recipient_id = old.recipient_id AND count <= 0;
  END;
  CREATE INDEX push_queue_recipient ON push_queue (recipient_id);
  CREATE INDEX bus_dead_letters_recipient ON bus_dead_letters (recipient_id);
  `,
  // 4: the per-recipient usage is summed per group transaction by the mailbox (UsageRows in sqlite-mailbox-usage.ts),
  // one upsert per recipient and transaction, instead of a trigger per inserted or deleted row (issue 16).
  `
  DROP TRIGGER mailbox_usage_insert;
  DROP TRIGGER mailbox_usage_delete;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies the migrations not yet applied, each in its own immediate transaction. */
export function migrate(db: Database.Database): void {
  const current = Number(db.pragma("user_version", { simple: true }));
  if (current > MIGRATIONS.length) {
    throw new Error(`routing.db has schema version ${current}, newer than this build's ${MIGRATIONS.length}`);
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    const apply = db.transaction(() => {
      db.exec(MIGRATIONS[version]);
      db.pragma(`user_version = ${version + 1}`);
    });
    apply.immediate();
  }
}
