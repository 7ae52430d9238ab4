import { Backoff, type BackoffOptions } from "./backoff.ts";
import { sendBatch, type BatchOutcome } from "./batch.ts";
import type { FetchLike } from "./http.ts";
import { sleep, type Life } from "./life.ts";
import { Inbox } from "./inbox.ts";
import { pickTransport } from "./select-transport.ts";
import { ConnectRefusedError, TransportClosedError, type Transport, type TransportFactory } from "./transport.ts";
import { newMessageId, refreshDelayMs, tokenExpiry } from "./token.ts";
import {
  RoutingClientError,
  type ConnectionState,
  type Delivery,
  type QueuedMessage,
  type SecureEnvelope,
  type AnyWebSocketClass,
  type TransportKind,
} from "./types.ts";

export interface RoutingClientOptions {
  /** The service's base URL, e.g. "http://host:8080" (also the one a MOVED close points to). */
  readonly url: string;
  /** Called for every (re)connect and before the current token expires; may return a promise. */
  readonly token: () => string | Promise<string>;
  /** `poke` (default): the service signals, the client pulls. `push`: the service sends messages themselves. */
  readonly delivery?: Delivery;
  /** A WebSocket class: required in Node 20 (e.g. the `ws` package's), default the runtime's global one. */
  readonly WebSocket?: AnyWebSocketClass;
  /**
   * `auto` (default): WebSocket, falling back to Server-Sent Events (`GET /events` with a ticket,
   * sends over HTTP) where a WebSocket cannot be opened; `websocket` or `sse`: only that one.
   */
  readonly transport?: TransportKind;
  /** Transport implementations by kind, replacing the built-in ones (tests, custom runtimes). */
  readonly transports?: Partial<Record<"websocket" | "sse", TransportFactory>>;
  /** Reconnect and retry backoff. */
  readonly backoff?: BackoffOptions;
  /** Messages per fetch while draining the mailbox (1..500, default 100). */
  readonly fetchLimit?: number;
  /** How many handled message ids are remembered to drop repeats (default 10 000). */
  readonly dedupWindow?: number;
  /** The fetch `sendBatch` (and the SSE transport) use; default the runtime's. */
  readonly fetch?: FetchLike;
}

type Events = {
  message: (message: QueuedMessage) => unknown;
  state: (state: ConnectionState) => void;
  /** Messages acked after their handler resolved (ids). */
  acked: (messageIds: string[]) => void;
  /** A handler threw, a pull failed, a token refresh failed: reported, then retried. */
  error: (error: unknown) => void;
};

/** Close codes (the service's README lists them). */
const GOING_AWAY = 1001;
const TOKEN_EXPIRED = 4002;
const SLOW_CONSUMER = 4008;
const MOVED = 4010;
const MAX_TIMER_MS = 2_147_483_647;

/**
 * A client of the Routing Service. It keeps one connection open (reconnecting with jittered
 * exponential backoff), pulls the mailbox until empty after every connect and every poke, hands
 * each stored message to the `message` handlers once (ids remembered across reconnects) and acks
 * it after they resolved, retries sends with the same messageId until accepted, and refreshes the
 * token in-band (the `auth` frame) before it expires.
 *
 * Guarantees: a message whose handler resolved is never handed over again by this instance (within
 * `dedupWindow` ids); a message whose handler threw is not acked and comes back on a later pull. A
 * `send` resolves only once the service durably accepted the envelope; retried sends carry the same
 * messageId, so the recipient gets it once.
 */
export class RoutingClient {
  readonly #options: RoutingClientOptions;
  readonly #factory: TransportFactory;
  readonly #listeners: { [K in keyof Events]: Set<Events[K]> } = { message: new Set(), state: new Set(), acked: new Set(), error: new Set() };
  readonly #backoff: Backoff;
  readonly #life: Life = { closed: false, wakers: new Set() };
  #url: string;
  #state: ConnectionState = "offline";
  #transport: Transport | undefined;
  #online: Array<() => void> = [];
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #inbox: Inbox;
  #loop: Promise<void>;

  constructor(options: RoutingClientOptions) {
    this.#options = options;
    this.#url = options.url;
    this.#backoff = new Backoff(options.backoff);
    this.#factory = pickTransport(options);
    this.#inbox = new Inbox({
      transport: () => this.#transport,
      life: this.#life,
      backoff: this.#backoff,
      fetchLimit: options.fetchLimit,
      dedupWindow: options.dedupWindow,
      handlers: () => this.#listeners.message,
      emit: (event: "error" | "acked", arg: unknown) => this.#emit(event, arg as never),
    });
    // Started on the next microtask, so listeners attached right after construction see "connecting".
    this.#loop = Promise.resolve().then(() => this.#run());
  }

  on<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Sends an envelope; resolves its messageId once the service durably accepted it. Retries
   * (reconnects, retryable errors, Retry-After) with the same messageId. Rejects with a
   * RoutingClientError for a refusal no retry can fix (e.g. INVALID_ENVELOPE), or once closed.
   */
  async send(envelope: SecureEnvelope): Promise<string> {
    const withId = { ...envelope, messageId: envelope.messageId ?? newMessageId() };
    const backoff = new Backoff(this.#options.backoff);
    for (;;) {
      const transport = await this.#whenOnline();
      try {
        return await transport.send(withId);
      } catch (err) {
        if (err instanceof TransportClosedError) continue;
        if (err instanceof RoutingClientError && err.retryable) {
          await sleep(backoff.next(err.retryAfterMs ?? 0), this.#life);
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Sends several envelopes in one request (`POST /send/batch`: a group message, one envelope per
   * member), each with its messageId (filled in if absent). Resolves, in order, each envelope's
   * outcome once every one is accepted (durable) or refused for good; retryable refusals
   * (RATE_LIMITED, OVERLOADED, a lost connection) are retried with the same ids. Needs no
   * connection: it goes over HTTP whatever the transport.
   */
  sendBatch(envelopes: readonly SecureEnvelope[]): Promise<BatchOutcome[]> {
    const fetchImpl = this.#options.fetch ?? globalThis.fetch.bind(globalThis);
    return sendBatch({ fetch: fetchImpl, url: () => this.#url, token: this.#options.token, backoff: this.#options.backoff, life: this.#life }, envelopes);
  }

  /** Closes the connection and stops reconnecting; pending sends reject. */
  async close(): Promise<void> {
    if (this.#life.closed) return;
    this.#life.closed = true;
    clearTimeout(this.#refreshTimer);
    this.#transport?.close(1000, "client closed");
    for (const wake of this.#online.splice(0)) wake();
    for (const wake of [...this.#life.wakers]) wake();
    await this.#loop;
    this.#setState("offline");
  }

  #emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const listener of this.#listeners[event]) {
      try {
        (listener as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (err) {
        if (event !== "error") this.#emit("error", err);
      }
    }
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  #whenOnline(): Promise<Transport> {
    if (this.#life.closed) return Promise.reject(new RoutingClientError("CLIENT_CLOSED", "the client is closed"));
    if (this.#transport && this.#state === "online") return Promise.resolve(this.#transport);
    return new Promise<void>((resolve) => this.#online.push(resolve)).then(() => this.#whenOnline());
  }

  /** The connection loop: connect, serve until closed, wait as the close code says, again. */
  async #run(): Promise<void> {
    let delayMs = 0;
    while (!this.#life.closed) {
      if (delayMs > 0) await sleep(delayMs, this.#life);
      if (this.#life.closed) break;
      this.#setState("connecting");
      let closed = { code: 1006, reason: "" };
      let closedResolve: () => void = () => {};
      const ended = new Promise<void>((resolve) => (closedResolve = resolve));
      try {
        const token = await this.#options.token();
        this.#transport = await this.#factory({
          url: this.#url,
          token,
          delivery: this.#options.delivery ?? "poke",
          events: {
            poke: () => void this.#inbox.pull(),
            message: (m) => void this.#inbox.deliver([m]),
            closed: (code, reason) => {
              closed = { code, reason };
              closedResolve();
            },
          },
        });
        if (this.#life.closed) {
          this.#transport.close(1000, "client closed");
          break;
        }
        this.#setState("online");
        this.#scheduleRefresh(token);
        for (const wake of this.#online.splice(0)) wake();
        void this.#inbox.pull();
        await ended;
      } catch (err) {
        this.#transport = undefined;
        if (this.#life.closed) break;
        this.#setState("offline");
        delayMs = this.#backoff.next(err instanceof ConnectRefusedError ? (err.retryAfterMs ?? 0) : 0);
        if (!(err instanceof ConnectRefusedError)) this.#emit("error", err);
        continue;
      }
      this.#transport = undefined;
      clearTimeout(this.#refreshTimer);
      if (this.#life.closed) break;
      this.#setState("offline");
      delayMs = this.#afterClose(closed.code, closed.reason);
    }
    this.#transport = undefined;
  }

  /** How long to wait before reconnecting after a close, by its code. */
  #afterClose(code: number, reason: string): number {
    switch (code) {
      case GOING_AWAY: // drained: another node (or this one, restarted) takes us at once
        this.#backoff.reset();
        return 0;
      case MOVED:
        if (/^https?:\/\//.test(reason)) this.#url = reason;
        this.#backoff.reset();
        return 0;
      case TOKEN_EXPIRED: // the next connect asks the token callback again
        return 0;
      case SLOW_CONSUMER:
      default:
        return this.#backoff.next();
    }
  }

  /** Refreshes the token in-band before it expires; a failure is retried and, at worst, the 4002 close reconnects. */
  #scheduleRefresh(token: string): void {
    clearTimeout(this.#refreshTimer);
    const expiresAt = tokenExpiry(token);
    if (expiresAt === undefined) return;
    const transport = this.#transport;
    const delay = refreshDelayMs(expiresAt, Date.now());
    // setTimeout fires at once past 2^31-1 ms (~24.8 days): wait in steps for a longer-lived token.
    if (delay > MAX_TIMER_MS) {
      this.#refreshTimer = setTimeout(() => this.#transport === transport && this.#scheduleRefresh(token), MAX_TIMER_MS);
      return;
    }
    this.#refreshTimer = setTimeout(async () => {
      if (this.#life.closed || this.#transport !== transport || !transport) return;
      try {
        const next = await this.#options.token();
        await transport.auth(next);
        this.#scheduleRefresh(next);
      } catch (err) {
        if (err instanceof TransportClosedError) return;
        this.#emit("error", err);
        if (Date.now() < expiresAt - 1000) this.#refreshTimer = setTimeout(() => this.#scheduleRefresh(token), 1000);
      }
    }, delay);
  }
}
