import type { SqliteDb } from "../../backends/sqlite-db.ts";

/** Every table and column of routing.db that still names `urn` ("table.column"). */
export function sqliteResidue(db: Pick<SqliteDb, "statement">, urn: string): string[] {
  const tables = db.statement<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all();
  const hits: string[] = [];
  for (const table of tables) {
    const columns = db
      .statement<[], { name: string }>(`PRAGMA table_info("${table}")`)
      .all()
      .map((c) => c.name);
    for (const column of columns) {
      const n = db.statement<[string], number>(`SELECT count(*) FROM "${table}" WHERE instr(CAST("${column}" AS TEXT), ?) > 0`).pluck().get(urn) ?? 0;
      if (n > 0) hits.push(`${table}.${column}`);
    }
  }
  return hits;
}
