/**
 * Frames a uWS socket sends outside uWS's own callbacks (deliveries and `sent` answers resolved
 * by a commit) are queued per socket and written together once the current microtask queue has
 * drained, inside `ws.cork()`: one send(2) per socket per batch instead of one per frame. A commit
 * answers many messages at once, so a receiver with several deliveries (and a sender with several
 * `sent` frames) used to cost a syscall each (README, "Performance").
 *
 * Order is kept: every frame of a socket goes through its queue; close() flushes it first.
 */
export interface BatchedSocket {
  /** Writes the queued frames (uWS-corked); drops them if the socket closed meanwhile. */
  flushQueued(): void;
}

let dirty: BatchedSocket[] = [];
let scheduled = false;

function flushAll(): void {
  scheduled = false;
  const sockets = dirty;
  dirty = [];
  for (const socket of sockets) socket.flushQueued();
}

/** Marks a socket as having queued frames; they are written when the microtask queue drains. */
export function queueFlush(socket: BatchedSocket): void {
  dirty.push(socket);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(flushAll);
  }
}
