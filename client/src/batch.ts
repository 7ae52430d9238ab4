import { Backoff, type BackoffOptions } from "./backoff.ts";
import { request, type FetchLike } from "./http.ts";
import { sleep, type Life } from "./life.ts";
import { newMessageId } from "./token.ts";
import { TransportClosedError } from "./transport.ts";
import { RoutingClientError, type SecureEnvelope } from "./types.ts";

/** One envelope's outcome: accepted (durable) with its id, or refused for good. */
export type BatchOutcome = { readonly messageId: string } | { readonly error: RoutingClientError };

type WireResult = { messageId: string } | { error: { code: string; message: string; retryAfterMs?: number } };

export interface BatchOptions {
  readonly fetch: FetchLike;
  readonly url: () => string;
  readonly token: () => string | Promise<string>;
  readonly backoff?: BackoffOptions;
  readonly life: Life;
}

/**
 * `POST /send/batch`, retried until every envelope is accepted or refused for good: the whole batch
 * again when the service cannot be reached or refuses it (503, 429), then only the items refused
 * with a retryable code, each with the same messageId (so nothing is stored twice).
 */
export async function sendBatch(options: BatchOptions, envelopes: readonly SecureEnvelope[]): Promise<BatchOutcome[]> {
  const items = envelopes.map((e) => ({ ...e, messageId: e.messageId ?? newMessageId() }));
  const outcomes: Array<BatchOutcome | undefined> = items.map(() => undefined);
  const backoff = new Backoff(options.backoff);
  for (;;) {
    if (options.life.closed) throw new RoutingClientError("CLIENT_CLOSED", "the client is closed");
    const pending = items.flatMap((_item, i) => (outcomes[i] === undefined ? [i] : []));
    if (pending.length === 0) return outcomes as BatchOutcome[];
    let floor = 0;
    try {
      const res = await request(options.fetch, options.url(), "POST", "/send/batch", await options.token(), { envelopes: pending.map((i) => items[i]) });
      const { results } = (await res.json()) as { results: WireResult[] };
      results.forEach((r, k) => {
        const i = pending[k];
        if ("messageId" in r) outcomes[i] = { messageId: r.messageId };
        else {
          const error = new RoutingClientError(r.error.code, r.error.message, r.error.retryAfterMs);
          if (error.retryable) floor = Math.max(floor, error.retryAfterMs ?? 0);
          else outcomes[i] = { error };
        }
      });
    } catch (err) {
      if (err instanceof RoutingClientError && !err.retryable) throw err;
      if (!(err instanceof TransportClosedError) && !(err instanceof RoutingClientError)) throw err;
      floor = err instanceof RoutingClientError ? (err.retryAfterMs ?? 0) : 0;
    }
    if (outcomes.some((o) => o === undefined)) await sleep(backoff.next(floor), options.life);
  }
}
