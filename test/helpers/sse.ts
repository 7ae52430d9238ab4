import { waitFor } from "../contracts/fixture.ts";

export interface StreamEvent {
  readonly event: string;
  readonly data: string;
}

/**
 * A fetch-based Server-Sent-Events reader (what a fetch-based client does): keeps every event and
 * comment in order, and whether the stream ended. `status` is the HTTP answer (no stream unless 200).
 */
export interface TestStream {
  readonly status: number;
  readonly contentType: string | null;
  readonly body: string;
  readonly events: StreamEvent[];
  readonly comments: string[];
  ended(): boolean;
  next(event: string, after?: number, timeoutMs?: number): Promise<StreamEvent>;
  close(): void;
}

export async function openStream(url: string, headers: Record<string, string> = {}): Promise<TestStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: abort.signal });
  const events: StreamEvent[] = [];
  const comments: string[] = [];
  let ended = false;
  let body = "";
  if (res.status !== 200 || res.body === null) {
    body = await res.text();
    ended = true;
  } else {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut: number;
          while ((cut = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message";
            const data: string[] = [];
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) comments.push(line.slice(1).trim());
              else if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length > 0) events.push({ event, data: data.join("\n") });
          }
        }
      } catch {
        // aborted or reset
      }
      ended = true;
    })();
  }
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    body,
    events,
    comments,
    ended: () => ended,
    async next(event, after = 0, timeoutMs = 10_000) {
      let found: StreamEvent | undefined;
      await waitFor(() => (found = events.slice(after).find((e) => e.event === event)) !== undefined, `event ${event}`, timeoutMs);
      return found as StreamEvent;
    },
    close: () => abort.abort(),
  };
}
