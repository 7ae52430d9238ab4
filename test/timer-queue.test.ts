import { describe, expect, it } from "vitest";
import { TimerQueue } from "../gateway/timer-queue.ts";

/** A queue that records what fired, and resolves once `count` entries have. */
function recording(count: number) {
  const fired: number[] = [];
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => (done = resolve));
  const queue = new TimerQueue<number>((n) => {
    fired.push(n);
    if (fired.length === count) done();
  });
  return { queue, fired, all };
}

describe("timer queue (one Node timer for every session's delays)", () => {
  it("fires each entry once, earliest deadline first, and never a removed one", async () => {
    const { queue, fired, all } = recording(2);
    queue.add(30, 30);
    queue.add(10, 10);
    const removed = queue.add(20, 20);
    queue.remove(removed);
    queue.remove(removed); // a second remove is a no-op
    expect(queue.size).toBe(2);
    await all;
    expect(fired).toEqual([10, 30]);
    expect(queue.size).toBe(0);
  });

  it("keeps heap order through many adds and removes", async () => {
    const entries = Array.from({ length: 300 }, (_, i) => i);
    const kept = entries.filter((i) => i % 3 !== 0);
    const { queue, fired, all } = recording(kept.length);
    const added = entries.map((i) => queue.add((i * 7919) % 25, i));
    for (const i of entries) if (i % 3 === 0) queue.remove(added[i]);
    expect(queue.size).toBe(kept.length);
    await all;
    expect([...fired].sort((a, b) => a - b)).toEqual(kept);
    const dues = fired.map((i) => added[i].due);
    expect(dues).toEqual([...dues].sort((a, b) => a - b));
  });

  it("an entry added while firing (a re-armed delay) fires too; clear() forgets the rest", async () => {
    const fired: string[] = [];
    let second: () => void = () => {};
    const secondFired = new Promise<void>((resolve) => (second = resolve));
    const queue: TimerQueue<string> = new TimerQueue<string>((name) => {
      fired.push(name);
      if (name === "first") queue.add(0, "second");
      else second();
    });
    queue.add(0, "first");
    await secondFired;
    expect(fired).toEqual(["first", "second"]);
    queue.add(60_000, "never");
    queue.clear();
    expect(queue.size).toBe(0);
  });
});
