import type { SessionTransport } from "../sessions.ts";
import type { EventStreamHandle } from "./stream.ts";

/** Close codes an event stream treats specially (core/close-codes.ts; MOVED comes with sharded delivery). */
const SLOW_CONSUMER = 4008;
const MOVED = 4010;

/** The frame's `type`: frames are built as `{"type":"<t>",...}` (core/frames.ts). */
function frameType(frame: string): string {
  const match = /^\{"type":"([a-z]+)"/.exec(frame);
  return match === null ? "message" : match[1];
}

/** The `event: close` a stream ends with: `{"code": n}`, plus the owner's URL for MOVED. */
export function closeEvent(code: number, reason: string): string {
  return `event: close\ndata: ${JSON.stringify(code === MOVED ? { code, url: reason } : { code })}\n\n`;
}

/**
 * A Server-Sent-Events stream as the session sees its connection: the same frames as WebSocket,
 * each as `event: <type>` + `data: <frame>`; a `: ping` comment for a ping. A stream has no pong:
 * a ping that finds the buffer empty (the reader keeps up) counts as answered, so a reader that
 * stopped reading misses its pongs (heartbeat timeout) or passes the buffer bound (4008), as a
 * WebSocket would. A close writes `event: close` and ends the response; a slow consumer's is cut.
 */
export class SseSessionTransport implements SessionTransport {
  readonly #handle: EventStreamHandle;
  /** Set once the session exists: tells it a ping was answered. */
  pong: (() => void) | undefined;

  constructor(handle: EventStreamHandle) {
    this.#handle = handle;
  }

  send(frame: string): boolean {
    return this.#handle.write(`event: ${frameType(frame)}\ndata: ${frame}\n\n`);
  }

  bufferedAmount(): number {
    return this.#handle.bufferedAmount();
  }

  ping(): void {
    // Everything written before this ping has reached the kernel: the reader keeps up.
    const keptUp = this.#handle.bufferedAmount() === 0;
    if (!this.#handle.write(": ping\n\n")) return;
    const pong = this.pong;
    if (keptUp && pong !== undefined) queueMicrotask(pong);
  }

  close(code: number, reason: string): void {
    if (code === SLOW_CONSUMER) return this.#handle.end(true);
    this.#handle.write(closeEvent(code, reason));
    this.#handle.end();
  }
}
