import { CLOSE } from "../core/close-codes.ts";
import type { Session } from "./sessions.ts";

/** Frames and bytes one session may send between its 101 and going online. */
export const PRE_ONLINE_MAX_FRAMES = 256;
export const PRE_ONLINE_MAX_BYTES = 1024 * 1024;

interface Held {
  readonly frames: Array<string | null>;
  bytes: number;
}

/**
 * Frames that arrive after the 101 while the session is still becoming online (presence being
 * written, Redis presence takes a round trip) are kept in arrival order and handed to `serve` in
 * that order the moment it is online, so a client may send right after the socket opens and is
 * never refused SHUTTING_DOWN for it (issue 14, contract "Limits and overload"). Bounded: past
 * PRE_ONLINE_MAX_FRAMES or PRE_ONLINE_MAX_BYTES the socket closes with 4008 (SLOW_CONSUMER's code:
 * more buffered than allowed). A session that ends before it is online drops what it held
 * (nothing in it was accepted).
 */
export function createPreOnlineBuffer(serve: (session: Session, text: string | null) => void) {
  const held = new WeakMap<Session, Held>();

  function becomingOnline(session: Session): boolean {
    const snapshot = session.actor.getSnapshot();
    return snapshot.status === "active" && (snapshot.matches("connecting") || snapshot.matches("authenticated"));
  }

  function flushWhenOnline(session: Session, entry: Held): void {
    const subscription = session.actor.subscribe((snapshot) => {
      if (snapshot.status === "active" && (snapshot.matches("connecting") || snapshot.matches("authenticated"))) return;
      subscription.unsubscribe();
      held.delete(session);
      if (!snapshot.matches("online")) return;
      for (const text of entry.frames) serve(session, text);
    });
  }

  /** True when the frame was taken (held, or the socket closed over the bound); false: serve it now. */
  return function hold(session: Session, text: string | null): boolean {
    let entry = held.get(session);
    if (entry === undefined) {
      if (!becomingOnline(session)) return false;
      entry = { frames: [], bytes: 0 };
      held.set(session, entry);
      flushWhenOnline(session, entry);
    }
    entry.frames.push(text);
    entry.bytes += text === null ? 0 : text.length;
    if (entry.frames.length > PRE_ONLINE_MAX_FRAMES || entry.bytes > PRE_ONLINE_MAX_BYTES) {
      entry.frames.length = 0;
      session.transport.close(CLOSE.SLOW_CONSUMER, "too many frames before the session was online");
    }
    return true;
  };
}
