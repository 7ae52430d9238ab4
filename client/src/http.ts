import { ConnectRefusedError, TransportClosedError } from "./transport.ts";
import { RoutingClientError } from "./types.ts";
import { retryAfterMs } from "./websocket-transport.ts";

/** The runtime's fetch (browsers, Node 20). */
export type FetchLike = typeof globalThis.fetch;

export function httpUrl(base: string, path: string): string {
  return new URL(path, base.replace(/^ws/, "http")).toString();
}

/** An error answer of the service as a RoutingClientError (its code, message and Retry-After). */
export async function answerError(res: Response): Promise<RoutingClientError> {
  let body: { error?: { code?: string; message?: string; retryAfterMs?: number } } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // Not the service's JSON (a proxy's page): the status is all there is.
  }
  const retry = body.error?.retryAfterMs ?? retryAfterMs(res.headers.get("retry-after"));
  const code = body.error?.code ?? (res.status >= 500 ? "BACKEND_UNAVAILABLE" : `HTTP_${res.status}`);
  return new RoutingClientError(code, body.error?.message ?? `HTTP ${res.status}`, retry);
}

/**
 * One authenticated JSON request. Resolves the response of a 2xx answer; rejects with the
 * service's RoutingClientError, or TransportClosedError when the service could not be reached (retry).
 */
export async function request(
  fetchImpl: FetchLike,
  base: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchImpl(httpUrl(base, path), {
      method,
      headers: body === undefined ? { authorization: `Bearer ${token}` } : { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    throw new TransportClosedError(`request failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (res.ok) return res;
  throw await answerError(res);
}

/** `request` for opening a connection: a refusal is a ConnectRefusedError with the status and Retry-After. */
export async function connectRequest(
  fetchImpl: FetchLike,
  base: string,
  method: string,
  path: string,
  token: string | undefined,
  signal?: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchImpl(httpUrl(base, path), {
      method,
      headers: token === undefined ? { accept: "text/event-stream" } : { authorization: `Bearer ${token}` },
      signal,
    });
  } catch (err) {
    throw new ConnectRefusedError(`connection failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (res.ok) return res;
  const error = await answerError(res);
  throw new ConnectRefusedError(`refused: ${res.status} ${error.code}`, res.status, error.retryAfterMs);
}
