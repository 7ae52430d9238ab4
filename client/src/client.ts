import { Backoff, type BackoffOptions } from "./backoff.ts";
import { ConnectRefusedError, TransportClosedError, type Transport, type TransportFactory } from "./transport.ts";
import { newMessageId, refreshDelayMs, tokenExpiry } from "./token.ts";
import { RoutingClientError, type ConnectionState, type Delivery, type QueuedMessage, type SecureEnvelope, type AnyWebSocketClass, type TransportKind, type WebSocketConstructor } from "./types.ts";
import { websocketTransport } from "./websocket-transport.ts";

export interface RoutingClientOptions {
  /** The service's base URL, e.g. "http://host:8080" (also the one a MOVED close points to). */
  readonly url: string;
  /** Called for every (re)connect and before the current token expires; may return a promise. */
  readonly token: () => string | Promise<string>;
  /** `poke` (default): the service signals, the client pulls. `push`: the service sends messages themselves. */
  readonly delivery?: Delivery;
  /** A WebSocket class: required in Node 20 (e.g. the `ws` package's), default the runtime's global one. */
  readonly WebSocket?: AnyWebSocketClass;
  /** `auto` (default) and `websocket` use WebSocket; `sse` needs an SSE transport in `transports` (see transport.ts). */
  readonly transport?: TransportKind;
  /** Transport implementations by kind, replacing or adding to the built-in WebSocket one (the SSE seam). */
  readonly transports?: Partial<Record<"websocket" | "sse", TransportFactory>>;
  /** Reconnect and retry backoff. */
  readonly backoff?: BackoffOptions;
  /** Messages per fetch while draining the mailbox (1..500, default 100). */
  readonly fetchLimit?: number;
  /** How many handled message ids are remembered to drop repeats (default 10 000). */
  readonly dedupWindow?: number;
}

type Events = {
  message: (message: QueuedMessage) => unknown;
  state: (state: ConnectionState) => void;
  /** Messages acked after their handler resolved (ids). */
  acked: (messageIds: string[]) => void;
  /** A handler threw, a pull failed, a token refresh failed: reported, then retried. */
  error: (error: unknown) => void;
};

/** The client's lifetime: `close()` ends every pending wait at once. */
interface Life {
  closed: boolean;
  readonly wakers: Set<() => void>;
}

const sleep = (ms: number, life: Life): Promise<void> =>
  new Promise((resolve) => {
    if (life.closed) return resolve();
    const wake = () => {
      clearTimeout(timer);
      life.wakers.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    life.wakers.add(wake);
  });

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
  readonly #handled = new Set<string>();
  readonly #backoff: Backoff;
  readonly #life: Life = { closed: false, wakers: new Set() };
  #url: string;
  #state: ConnectionState = "offline";
  #transport: Transport | undefined;
  #online: Array<() => void> = [];
  #pulling = false;
  #pullAgain = false;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Deliveries run one after another (pulls and pushed frames alike), so a message is never handled twice at once. */
  #delivering: Promise<boolean> = Promise.resolve(true);
  #loop: Promise<void>;

  constructor(options: RoutingClientOptions) {
    this.#options = options;
    this.#url = options.url;
    this.#backoff = new Backoff(options.backoff);
    this.#factory = pickTransport(options);
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
            poke: () => void this.#pull(),
            message: (m) => void this.#deliver([m]),
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
        void this.#pull();
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

  /** Pulls until the mailbox is empty; a poke during a pull makes it go round once more. */
  async #pull(): Promise<void> {
    if (this.#pulling) {
      this.#pullAgain = true;
      return;
    }
    this.#pulling = true;
    try {
      do {
        this.#pullAgain = false;
        const transport = this.#transport;
        if (!transport || this.#life.closed) return;
        let batch: QueuedMessage[];
        try {
          batch = await transport.fetch(this.#options.fetchLimit ?? 100);
        } catch (err) {
          if (err instanceof TransportClosedError) return; // the next connect pulls
          this.#emit("error", err);
          await sleep(this.#backoff.next(err instanceof RoutingClientError ? (err.retryAfterMs ?? 0) : 0), this.#life);
          this.#pullAgain = true;
          continue;
        }
        if (batch.length === 0) {
          this.#backoff.reset();
          continue;
        }
        const allHandled = await this.#deliver(batch);
        // A handler that threw leaves its message in the mailbox: pause before it comes round again.
        if (!allHandled) await sleep(this.#backoff.next(), this.#life);
        this.#pullAgain = true;
      } while (this.#pullAgain && !this.#life.closed);
    } finally {
      this.#pulling = false;
    }
  }

  /** Hands messages to the handlers in order (repeats skipped), acks what was handled. False if a handler threw. */
  #deliver(messages: readonly QueuedMessage[]): Promise<boolean> {
    const run = this.#delivering.then(() => this.#deliverNow(messages));
    this.#delivering = run.catch(() => false);
    return run;
  }

  async #deliverNow(messages: readonly QueuedMessage[]): Promise<boolean> {
    const acks: string[] = [];
    let ok = true;
    for (const message of messages) {
      if (!this.#handled.has(message.id)) {
        try {
          for (const handler of this.#listeners.message) await handler(message);
        } catch (err) {
          this.#emit("error", err);
          ok = false;
          break;
        }
        this.#remember(message.id);
      }
      if (!message.envelope.isEphemeral) acks.push(message.id);
    }
    if (acks.length > 0) {
      for (let i = 0; i < acks.length; i += 500) this.#transport?.ack(acks.slice(i, i + 500));
      this.#emit("acked", acks);
    }
    return ok;
  }

  #remember(id: string): void {
    this.#handled.add(id);
    const max = this.#options.dedupWindow ?? 10_000;
    if (this.#handled.size > max) this.#handled.delete(this.#handled.values().next().value as string);
  }
}

/** The transport the options ask for. `auto` is WebSocket until an SSE transport exists to fall back to. */
function pickTransport(options: RoutingClientOptions): TransportFactory {
  const kind = options.transport ?? "auto";
  if (kind === "sse") {
    const sse = options.transports?.sse;
    if (!sse) throw new RoutingClientError("TRANSPORT_UNAVAILABLE", 'transport "sse" needs an SSE transport in options.transports.sse (none is built in yet)');
    return sse;
  }
  if (options.transports?.websocket) return options.transports.websocket;
  // The browser's and ws's classes both have the members WebSocketConstructor names; only their typings differ.
  const WebSocketClass = (options.WebSocket ?? (globalThis as { WebSocket?: AnyWebSocketClass }).WebSocket) as WebSocketConstructor | undefined;
  if (!WebSocketClass) throw new RoutingClientError("TRANSPORT_UNAVAILABLE", "no WebSocket class: pass one in the options (e.g. the ws package's in Node 20)");
  // issue 20 (SSE): with "auto", fall back to options.transports.sse when the WebSocket connect is refused or blocked.
  return websocketTransport(WebSocketClass);
}
