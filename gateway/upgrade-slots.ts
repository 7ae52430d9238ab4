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

/** `abandoned` runs too when the socket never opened (the session waiting for it ends). */
export function holdUntilOpened(slot: ConnectionSlot | undefined, abandoned: () => void = () => {}): HeldSlot {
  const timer = setTimeout(() => {
    slot?.release();
    abandoned();
  }, OPEN_WITHIN_MS);
  timer.unref();
  return {
    opened: () => clearTimeout(timer),
    release: () => {
      clearTimeout(timer);
      slot?.release();
    },
  };
}
