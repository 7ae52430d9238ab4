import { STATUS_CODES } from "node:http";
import type * as Uws from "uWebSockets.js";
import { asRoutingError } from "../../core/errors.ts";
import type { RequestGuard } from "../request-guard.ts";
import { errorOutgoing, normalizeOr500, type Outgoing } from "../responses.ts";
import type { EventStreamHandle, EventStreamListener, EventStreamRoute } from "./stream.ts";

/**
 * uWS closes an HTTP connection that has written nothing for 10 s (its compiled-in HTTP timeout,
 * reset by every write), whatever ROUTING_HEARTBEAT_SECONDS says: an empty comment keeps an idle
 * stream alive. The ws engine (node:http) needs none.
 */
const UWS_KEEPALIVE_MS = 7_000;

/** The `uws` engine's side of an event stream: `GET <route.path>` on the app, before its catch-all. */
export function mountUwsEventStream(app: Uws.TemplatedApp, route: EventStreamRoute, guard: RequestGuard): void {
  app.get(route.path, (res, req) => {
    // Copy everything off the stack-allocated request before any await.
    const headers: Record<string, string> = {};
    req.forEach((key, value) => {
      const name = key.toLowerCase();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    });
    const request = { path: req.getUrl(), query: new URLSearchParams(req.getQuery() ?? ""), headers };
    let leave: () => void;
    try {
      leave = guard.enter();
    } catch (err) {
      writePlain(res, errorOutgoing(asRoutingError(err)));
      return;
    }
    let gone = false;
    let listener: EventStreamListener | undefined;
    let notified = false;
    let keepAlive: ReturnType<typeof setInterval> | undefined;
    let buffered = 0;
    let lastWrite = Date.now();
    const finish = (): void => {
      gone = true;
      clearInterval(keepAlive);
      leave();
      // Never re-enter the listener from inside one of its handle calls.
      queueMicrotask(() => {
        if (notified || listener === undefined) return;
        notified = true;
        listener.closed();
      });
    };
    res.onAborted(finish);
    route.decide(request).then(
      (decision) => {
        leave();
        if (gone) return;
        if (!decision.accept) {
          const out = normalizeOr500(decision.response);
          gone = true;
          res.cork(() => writePlain(res, out));
          return;
        }
        const write = (text: string): boolean => {
          if (gone) return false;
          lastWrite = Date.now();
          let ok = true;
          res.cork(() => {
            ok = res.write(text);
          });
          if (!ok) buffered += Buffer.byteLength(text);
          return true;
        };
        const handle: EventStreamHandle = {
          write,
          bufferedAmount: () => (gone ? 0 : buffered),
          end(abort) {
            if (gone) return;
            if (abort) {
              res.close();
            } else {
              res.cork(() => res.end());
            }
            finish();
          },
        };
        res.cork(() => {
          res.writeStatus("200 OK");
          for (const [name, value] of Object.entries(decision.headers)) res.writeHeader(name, value);
        });
        res.onWritable(() => {
          buffered = 0;
          listener?.drain();
          return true;
        });
        listener = decision.start(handle);
        handle.write(":\n\n");
        keepAlive = setInterval(() => {
          if (Date.now() - lastWrite >= UWS_KEEPALIVE_MS) write(":\n\n");
        }, UWS_KEEPALIVE_MS / 2);
        keepAlive.unref();
      },
      (err: unknown) => {
        leave();
        if (gone) return;
        gone = true;
        const out = errorOutgoing(asRoutingError(err));
        res.cork(() => writePlain(res, out));
      },
    );
  });
}

function writePlain(res: Uws.HttpResponse, out: Outgoing): void {
  res.writeStatus(`${out.status} ${STATUS_CODES[out.status] ?? "Unknown"}`);
  for (const [name, value] of out.headers) res.writeHeader(name, value);
  res.end(out.body, true);
}
