import type { ConnectionSlot } from "../limits/index.ts";

/**
 * How long an accepted upgrade may take to open before its connection slot is given back: the
 * engine may drop the socket between the decision and the 101 (the client left) without ever
 * calling `open`, and such a slot must not count against the identity for good.
 */
const OPEN_WITHIN_MS = 10_000;

/** A connection slot taken at upgrade time, released once whatever happens next. */
export interface HeldSlot {
  /** The socket opened: from now on its `closed` releases the slot. */
  opened(): void;
  release(): void;
}

export function holdUntilOpened(slot: ConnectionSlot | undefined): HeldSlot {
  if (slot === undefined) return { opened: () => {}, release: () => {} };
  const timer = setTimeout(() => slot.release(), OPEN_WITHIN_MS);
  timer.unref();
  return {
    opened: () => clearTimeout(timer),
    release: () => {
      clearTimeout(timer);
      slot.release();
    },
  };
}
