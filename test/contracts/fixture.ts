/**
 * One backend under test. `open` may be called more than once per test (a durable backend opens
 * the same storage again, e.g. after a simulated restart); `teardown` closes everything `open`
 * made and removes its storage. A fresh fixture is made for every test.
 */
export interface Fixture<T, O> {
  open(opts: O): Promise<T>;
  teardown(): Promise<void>;
}

export type FixtureFactory<T, O> = () => Promise<Fixture<T, O>>;

/** A clock tests move by hand. */
export interface ManualClock {
  readonly now: () => number;
  advance(ms: number): void;
}

export function manualClock(start = 1_700_000_000_000): ManualClock {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` holds; the timeout only bounds a failing test, it asserts no speed. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(2);
  }
}
