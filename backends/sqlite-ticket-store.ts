import { guarded } from "./guarded.ts";
import type { SqliteDb } from "./sqlite-db.ts";
import { grantAt, parseStoredTicket, type TicketStore } from "./ticket-store.ts";

/*
 * The table is created here, not by a migration: it holds nothing that outlives 30 s, so it needs
 * no versioned schema, and the migration list stays free for roles whose data does.
 */
const SCHEMA = `CREATE TABLE IF NOT EXISTS sse_tickets (
  key        TEXT    PRIMARY KEY,
  grant_json TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sse_tickets_expires_at ON sse_tickets (expires_at);`;

interface Row {
  readonly grant_json: string;
}

/**
 * Tickets in the node's embedded SQLite database (the embedded default: one node). A put is one
 * group-committed write; a take is one `DELETE ... RETURNING`, atomic by itself.
 */
export function createSqliteTicketStore(db: SqliteDb): TicketStore {
  // The table exists before any statement on it is prepared (writes run in order).
  const created = db.write((raw) => raw.exec(SCHEMA));
  created.catch(() => {});
  const prepare = () => ({
    insert: db.statement<[string, string, number]>("INSERT OR REPLACE INTO sse_tickets (key, grant_json, expires_at) VALUES (?, ?, ?)"),
    sweep: db.statement<[number]>("DELETE FROM sse_tickets WHERE expires_at <= ?"),
    take: db.statement<[string], Row>("DELETE FROM sse_tickets WHERE key = ? RETURNING grant_json"),
  });
  let prepared: ReturnType<typeof prepare> | undefined;
  const statements = async () => {
    await created;
    return (prepared ??= prepare());
  };
  let open = true;
  return {
    put(key, grant, expiresAt) {
      return guarded("ticket put", open, async () => {
        const { insert, sweep } = await statements();
        await db.write(() => {
          sweep.run(Date.now());
          insert.run(key, JSON.stringify({ ...grant, expiresAt }), expiresAt);
        });
      });
    },
    take(key, now) {
      return guarded("ticket take", open, async () => {
        const { take } = await statements();
        const row = await db.writeStatement(() => take.get(key));
        return grantAt(parseStoredTicket(row?.grant_json), now);
      });
    },
    ready: async () => open && db.open,
    async close() {
      open = false;
    },
  };
}
