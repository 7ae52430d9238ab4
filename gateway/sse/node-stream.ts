import type http from "node:http";
import { STATUS_CODES } from "node:http";
import { asRoutingError } from "../../core/errors.ts";
import type { RequestGuard } from "../request-guard.ts";
import { errorOutgoing, normalizeOr500, type Outgoing } from "../responses.ts";
import type { EventStreamHandle, EventStreamListener, EventStreamRequest, EventStreamRoute } from "./stream.ts";

/** The `ws` engine's (node:http) side of an event stream: `GET <route.path>` is handed here whole. */
export function serveNodeEventStream(
  route: EventStreamRoute,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  request: EventStreamRequest,
  guard: RequestGuard,
): void {
  req.resume();
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
  const notify = (): void => {
    if (notified || listener === undefined) return;
    notified = true;
    listener.closed();
  };
  res.once("close", () => {
    gone = true;
    leave();
    notify();
  });
  route.decide(request).then(
    (decision) => {
      leave();
      if (gone || res.destroyed) return;
      if (!decision.accept) return writePlain(res, normalizeOr500(decision.response));
      res.writeHead(200, { ...decision.headers, connection: "keep-alive" });
      res.socket?.setNoDelay(true);
      const handle: EventStreamHandle = {
        write(text) {
          if (gone || res.writableEnded) return false;
          res.write(text);
          return true;
        },
        bufferedAmount: () => (gone ? 0 : res.writableLength + (res.socket?.writableLength ?? 0)),
        end(abort) {
          if (gone || res.writableEnded) return;
          if (abort) res.destroy();
          else res.end();
        },
      };
      res.on("drain", () => listener?.drain());
      listener = decision.start(handle);
      // Flush the head now: a client waits for it before it calls the stream open.
      handle.write(":\n\n");
      if (gone) queueMicrotask(notify);
    },
    (err: unknown) => {
      leave();
      if (!gone) writePlain(res, errorOutgoing(asRoutingError(err)));
    },
  );
}

function writePlain(res: http.ServerResponse, out: Outgoing): void {
  if (res.headersSent || res.destroyed) return;
  const headers: http.OutgoingHttpHeaders = Object.fromEntries(out.headers);
  headers["content-length"] = out.body.length;
  res.writeHead(out.status, STATUS_CODES[out.status] ?? "Unknown", headers);
  res.end(out.body);
}
