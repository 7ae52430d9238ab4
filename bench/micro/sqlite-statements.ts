/**
 * `npx tsx bench/micro/sqlite-statements.ts`: the embedded store's per-message statements timed one
 * by one (wall µs per message, groups of 200 messages per transaction, 64 recipients, 200 B
 * payloads, `synchronous=NORMAL` so the commit shows its page writes without the fsync). What the
 * durable path costs before any routing code runs; README "Performance" quotes it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteDb } from "../../backends/sqlite-db.ts";

const dir = mkdtempSync(join(tmpdir(), "sqlite-statements-"));
const db = openSqliteDb({ dataDir: dir, sync: "normal" });
const envelope = JSON.stringify({ recipientId: "urn:sm:user:r1", messageId: "m", encryptedData: "Z".repeat(200) });
const busInsert = db.statement(
  "INSERT INTO bus_records (recipient_id, message_id, is_ephemeral, priority, envelope, accepted_at, path, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
);
const busDelete = db.statement("DELETE FROM bus_records WHERE seq = ?");
const dedup = db.statement(
  `INSERT INTO mailbox_dedup (recipient_id, message_id, expires_at) VALUES (?, ?, ?)
   ON CONFLICT (recipient_id, message_id) DO UPDATE SET expires_at = excluded.expires_at WHERE mailbox_dedup.expires_at <= ?`,
);
const mailboxInsert = db.statement("INSERT OR IGNORE INTO mailbox (recipient_id, message_id, priority, envelope, queued_at) VALUES (?, ?, ?, ?, ?)");
const mailboxAck = db.statement("DELETE FROM mailbox WHERE recipient_id = ? AND message_id IN (SELECT value FROM json_each(?))");
const savepoint = db.statement("SAVEPOINT w");
const release = db.statement("RELEASE w");
const begin = db.statement("BEGIN IMMEDIATE");
const commit = db.statement("COMMIT");

const MESSAGES = 20_000;
const GROUP = 200;
const RECIPIENTS = 64;
const ns: Record<string, number> = {};
const timed = (what: string, fn: () => void): void => {
  const t0 = process.hrtime.bigint();
  fn();
  ns[what] = (ns[what] ?? 0) + Number(process.hrtime.bigint() - t0);
};

let id = 0;
for (let round = 0; round < 3; round++) {
  for (const k of Object.keys(ns)) ns[k] = 0;
  for (let g = 0; g < MESSAGES / GROUP; g++) {
    begin.run();
    const seqs: number[] = [];
    const acks: string[][] = Array.from({ length: RECIPIENTS }, () => []);
    for (let i = 0; i < GROUP; i++, id++) {
      const recipient = `urn:sm:user:r${id % RECIPIENTS}`;
      const messageId = `m.${id}`;
      const now = Date.now();
      timed("bus insert", () => void seqs.push(Number(busInsert.run(recipient, messageId, 0, 0, envelope, now, "ws", now).lastInsertRowid)));
      timed("savepoint+release", () => {
        savepoint.run();
        release.run();
      });
      timed("de-dup upsert", () => dedup.run(recipient, messageId, now + 604_800_000, now));
      timed("mailbox insert", () => mailboxInsert.run(recipient, messageId, 0, envelope, now));
      acks[id % RECIPIENTS].push(messageId);
    }
    for (const seq of seqs) timed("bus delete", () => busDelete.run(seq));
    for (let r = 0; r < RECIPIENTS; r++) timed("mailbox ack (batched)", () => mailboxAck.run(`urn:sm:user:r${r}`, JSON.stringify(acks[r])));
    timed("commit", () => commit.run());
  }
  console.log(
    `round ${round + 1}: ` +
      Object.entries(ns)
        .map(([k, v]) => `${k} ${(v / 1000 / MESSAGES).toFixed(2)}`)
        .join(", ") +
      " µs per message",
  );
}
db.close();
rmSync(dir, { recursive: true, force: true });
