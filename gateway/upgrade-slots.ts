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

/**
 * `abandoned` runs too when the socket never opened (the session waiting for it ends). A class,
 * not an object of closures: one lives per idle connection, and once opened it drops its timer.
 */
export function holdUntilOpened(slot: ConnectionSlot | undefined, abandoned: () => void = () => {}): HeldSlot {
  return new Held(slot, abandoned);
}

class Held implements HeldSlot {
  readonly #slot: ConnectionSlot | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(slot: ConnectionSlot | undefined, abandoned: () => void) {
    this.#slot = slot;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      slot?.release();
      abandoned();
    }, OPEN_WITHIN_MS);
    this.#timer.unref();
  }

  opened(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  release(): void {
    this.opened();
    this.#slot?.release();
  }
}
