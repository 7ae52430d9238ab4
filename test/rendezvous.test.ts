import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { rendezvousAssign, rendezvousOwner } from "../shards/rendezvous.ts";

const SHARDS = 256;
const nodeIds = fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/), { minLength: 1, maxLength: 8 });

describe("rendezvous hashing", () => {
  it("a node joining takes only shards it now owns; nothing moves between the others", () => {
    fc.assert(
      fc.property(nodeIds, fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/), (ids, joiner) => {
        fc.pre(!ids.includes(joiner));
        const before = rendezvousAssign(ids, SHARDS);
        const after = rendezvousAssign([...ids, joiner], SHARDS);
        for (let s = 0; s < SHARDS; s++) if (after[s] !== before[s]) expect(after[s]).toBe(joiner);
      }),
      { numRuns: 60 },
    );
  });

  it("a node leaving gives up only its own shards", () => {
    fc.assert(
      fc.property(
        nodeIds.filter((ids) => ids.length >= 2),
        fc.nat(),
        (ids, pick) => {
          const gone = ids[pick % ids.length];
          const before = rendezvousAssign(ids, SHARDS);
          const after = rendezvousAssign(
            ids.filter((id) => id !== gone),
            SHARDS,
          );
          for (let s = 0; s < SHARDS; s++) {
            if (before[s] !== gone) expect(after[s]).toBe(before[s]);
            else expect(after[s]).not.toBe(gone);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it("does not depend on the order of the member list, and has no owner without members", () => {
    expect(rendezvousAssign(["a", "b", "c"], 64)).toEqual(rendezvousAssign(["c", "a", "b"], 64));
    expect(rendezvousOwner([], 3)).toBeUndefined();
  });

  it("spreads shards evenly enough over the nodes", () => {
    const ids = ["node-1", "node-2", "node-3", "node-4"];
    const counts = new Map<string, number>();
    for (const owner of rendezvousAssign(ids, 4096)) counts.set(owner as string, (counts.get(owner as string) ?? 0) + 1);
    for (const id of ids) expect(counts.get(id) ?? 0).toBeGreaterThan(1024 * 0.85);
  });
});
