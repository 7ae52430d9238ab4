import WebSocket from "ws";
import { http } from "./clients.ts";

/**
 * A strict test client for sharded delivery: a poke-mode WebSocket that follows 4010 MOVED to the
 * URL in the close reason, retries other nodes when one is unreachable, and after every (re)connect
 * and poke pulls the mailbox over HTTP until it is empty, acking each page (HTTP ack: durable
 * before the next fetch). It never de-duplicates: `duplicates` lists every id a fetch returned
 * after the service had confirmed its ack (204). A page whose ack got no answer (the node died
 * mid-request) may come back, as the contract allows: that is not counted. `received` is every id
 * a fetch returned: what the user got. (An ack can stay unanswered for a while after a node died
 * in the middle of acking the same messages: Firestore holds the dead transaction's locks until
 * they expire, so the acks of those ids wait; the ids themselves were received.) Every request
 * gives up after 10 s, as a real client would, instead of stalling the pull loop.
 */
const REQUEST_TIMEOUT_MS = 10_000;

export class MovedClient {
  /** Every id whose ack the service confirmed. */
  readonly acked = new Set<string>();
  /** Every id a fetch returned. */
  readonly received = new Set<string>();
  readonly duplicates: string[] = [];
  /** Each MOVED followed: the URL it pointed to. */
  readonly moved: string[] = [];
  /** Base URLs of every successful open, in order. */
  readonly opened: string[] = [];
  /** Every close: code and reason. */
  readonly closes: string[] = [];
  #url: string;
  #nodes: string[];
  #token: string;
  #ws: WebSocket | undefined;
  #closed = false;
  #pulling: Promise<void> | undefined;
  #again = false;

  constructor(url: string, nodes: string[], token: string) {
    this.#url = url;
    this.#nodes = nodes;
    this.#token = token;
  }

  get url(): string {
    return this.#url;
  }

  start(): void {
    this.#connect();
  }

  close(): void {
    this.#closed = true;
    this.#ws?.terminate();
  }

  #connect(): void {
    if (this.#closed) return;
    const url = this.#url;
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/connect?delivery=poke`, { headers: { authorization: `Bearer ${this.#token}` } });
    this.#ws = ws;
    let open = false;
    ws.on("open", () => {
      open = true;
      this.opened.push(url);
      this.pull();
    });
    ws.on("message", (data) => {
      if ((JSON.parse(data.toString()) as { type: string }).type === "poke") this.pull();
    });
    ws.on("unexpected-response", (_req, res) => {
      // 503 NO_SHARD_OWNER while a shard changes hands: ask the same node again after its Retry-After.
      const wait = Number(res.headers["retry-after"] ?? 1) * 1000;
      res.resume();
      this.#ws = undefined; // its close event is not a reason to try another node
      ws.terminate();
      setTimeout(() => this.#connect(), wait).unref();
    });
    ws.on("error", () => {});
    ws.on("close", (code, reason) => {
      if (this.#closed || this.#ws !== ws) return;
      const text = reason.toString();
      this.closes.push(`${code}${text ? ` ${text}` : ""}`);
      if (code === 4010 && /^https?:\/\//.test(text)) {
        this.moved.push(text);
        this.#url = text;
        return this.#connect();
      }
      // Unreachable (refused, reset, killed): the next node in the list.
      if (!open) this.#url = this.#nodes[(this.#nodes.indexOf(this.#url) + 1) % this.#nodes.length];
      setTimeout(() => this.#connect(), 100).unref();
    });
  }

  /** Pull wake-ups from outside (what a push notification does for a real client). */
  wakes = 0;

  wake(): void {
    this.wakes++;
    this.pull();
  }

  /** Pulls until empty; a poke during a pull pulls again after it. */
  pull(): void {
    if (this.#closed) return;
    if (this.#pulling) {
      this.#again = true;
      return;
    }
    this.#pulling = (async () => {
      do {
        this.#again = false;
        try {
          for (;;) {
            const res = await http(this.#url, "GET", "/messages?limit=200", { token: this.#token, timeoutMs: REQUEST_TIMEOUT_MS });
            if (res.status !== 200) throw new Error(`fetch ${res.status}`);
            const page = res.body.messages ?? [];
            if (page.length === 0) break;
            for (const m of page) {
              if (this.acked.has(m.id)) this.duplicates.push(m.id);
              this.received.add(m.id);
            }
            const ack = await http(this.#url, "POST", "/messages/ack", {
              token: this.#token,
              body: { messageIds: page.map((m) => m.id) },
              timeoutMs: REQUEST_TIMEOUT_MS,
            });
            if (ack.status !== 204) throw new Error(`ack ${ack.status}`);
            for (const m of page) this.acked.add(m.id);
          }
        } catch {
          // The node went away or refused mid-pull: try again shortly (the next open pulls too).
          this.#again = false;
          setTimeout(() => this.pull(), 300).unref();
        }
      } while (this.#again);
      this.#pulling = undefined;
    })();
  }
}
