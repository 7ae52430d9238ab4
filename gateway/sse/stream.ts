import type { HttpResponse } from "../engine.ts";

/**
 * The engine seam for a streamed HTTP response (Server-Sent Events, `GET /events`). Like
 * `SocketHooks` for WebSocket: the engine asks `decide` (which authenticates; a refusal is an
 * ordinary response, no stream), then writes the 200 head and hands the listener-producing `start`
 * a handle on the open response. Engines know nothing of sessions, tickets or event syntax.
 */
export interface EventStreamRequest {
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface EventStreamHandle {
  /** Queues text on the response. Returns false if the response is already closed. */
  write(text: string): boolean;
  /** Bytes queued but not yet handed to the kernel (an estimate where the engine hides it). */
  bufferedAmount(): number;
  /** Ends the response after what is queued (`abort`: at once, dropping it). Idempotent. */
  end(abort?: boolean): void;
}

export interface EventStreamListener {
  /** The write buffer went down after backpressure. */
  drain(): void;
  /** The response is over, whoever ended it. Called exactly once, never from inside a handle call. */
  closed(): void;
}

export type EventStreamDecision =
  | { readonly accept: true; readonly headers: Readonly<Record<string, string>>; start(handle: EventStreamHandle): EventStreamListener }
  | { readonly accept: false; readonly response: HttpResponse };

export interface EventStreamRoute {
  /** "/events"; only GET is streamed, other methods go to the HTTP handler. */
  readonly path: string;
  decide(request: EventStreamRequest): Promise<EventStreamDecision>;
}

/** Headers of every event stream: no caching, no proxy buffering (nginx honours X-Accel-Buffering). */
export const EVENT_STREAM_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store",
  "x-accel-buffering": "no",
};
