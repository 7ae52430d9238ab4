import { connectRequest, request, type FetchLike } from "./http.ts";
import { tokenExpiry } from "./token.ts";
import { TransportClosedError, type Transport, type TransportConnectOptions, type TransportFactory } from "./transport.ts";
import type { QueuedMessage, SecureEnvelope, ServerFrame } from "./types.ts";

/** What the stream's `event: close` carries: `{"code": 1001}`, or MOVED's `{"code": 4010, "url": "..."}`. */
interface CloseData {
  code?: number;
  url?: string;
}

/** Splits a text/event-stream into events (`event:` + `data:` lines); comments (`: ping`) are skipped. */
export function createEventParser(onEvent: (event: string, data: string) => void): (chunk: string) => void {
  let buffer = "";
  return (chunk) => {
    buffer += chunk.replace(/\r\n?/g, "\n");
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length > 0) onEvent(event, data.join("\n"));
    }
  };
}

/**
 * The Server-Sent-Events transport: `POST /tickets`, then `GET /events?ticket=` read with fetch
 * (which, unlike EventSource, shows why a connect was refused and never reconnects on its own with
 * a spent ticket). Sends, fetches and acks go over the HTTP routes with the current token.
 */
export function sseTransport(fetchImpl: FetchLike = globalThis.fetch.bind(globalThis)): TransportFactory {
  return async ({ url, token, delivery, events }: TransportConnectOptions): Promise<Transport> => {
    const abort = new AbortController();
    const issued = (await (await connectRequest(fetchImpl, url, "POST", "/tickets", token)).json()) as { ticket: string };
    const query = new URLSearchParams({ delivery, ticket: issued.ticket });
    const res = await connectRequest(fetchImpl, url, "GET", `/events?${query}`, undefined, abort.signal);
    if (res.body === null) throw new TransportClosedError("the event stream has no body");
    let current = token;
    let done = false;
    let close: CloseData = {};
    const finish = (): void => {
      if (done) return;
      done = true;
      abort.abort();
      events.closed(close.code ?? 1006, close.url ?? "");
    };
    const parse = createEventParser((event, data) => {
      if (done) return;
      try {
        if (event === "close") close = JSON.parse(data) as CloseData;
        const frame = JSON.parse(data) as ServerFrame;
        if (frame.type === "poke") events.poke();
        else if (frame.type === "message") events.message(frame.message);
      } catch {
        // Not JSON: not a frame of the contract.
      }
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      try {
        for (;;) {
          const { value, done: ended } = await reader.read();
          if (ended) break;
          parse(value);
        }
      } catch {
        // Aborted, reset: the stream is over either way.
      }
      finish();
    })();
    const live = (): void => {
      if (done) throw new TransportClosedError("connection closed");
    };
    return {
      async send(envelope: SecureEnvelope & { messageId: string }) {
        live();
        const answer = (await (await request(fetchImpl, url, "POST", "/send", current, envelope)).json()) as { messageId: string };
        return answer.messageId;
      },
      async fetch(limit: number): Promise<QueuedMessage[]> {
        live();
        return ((await (await request(fetchImpl, url, "GET", `/messages?limit=${limit}`, current)).json()) as { messages: QueuedMessage[] }).messages;
      },
      ack(messageIds) {
        if (done || messageIds.length === 0) return;
        // The next pull brings back what a lost ack left in the mailbox.
        request(fetchImpl, url, "POST", "/messages/ack", current, { messageIds }).catch(() => {});
      },
      async auth(newToken: string) {
        live();
        current = newToken;
        // The stream itself keeps the identity its ticket named; it ends with 4002 when the token
        // that asked for the ticket expires, and the client reconnects with a fresh one.
        const exp = tokenExpiry(newToken);
        return exp === undefined ? undefined : Math.floor(exp / 1000);
      },
      close(code = 1000) {
        if (done) return;
        close = { code };
        finish();
      },
    };
  };
}
