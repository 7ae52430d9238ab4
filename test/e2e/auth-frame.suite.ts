import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOSE } from "../../core/close-codes.ts";
import { connect, type Frame } from "../helpers/clients.ts";
import { removeDir, startService, token, type RunningService } from "../helpers/service.ts";

let users = 0;
function user(name: string): string {
  return `urn:sm:user:${name}-${++users}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The in-band `auth` frame over a real service process and real sockets: a session refreshed before
 * its token expires outlives that token; a refused refresh leaves the old expiry (4002) in force.
 */
export function describeAuthFrame(engine: "uws" | "ws"): void {
  describe(`WebSocket auth frame (${engine} engine)`, () => {
    let svc: RunningService;
    beforeAll(async () => {
      svc = await startService({ ROUTING_GATEWAY_ENGINE: engine });
    });
    afterAll(async () => {
      expect(await svc?.stop()).toBe(0);
      removeDir(svc.dataDir);
    });

    it("a refreshed session outlives its first token; an unrefreshed twin closes with 4002", async () => {
      const me = user("refresh");
      const shortLived = await token(me, "3s");
      const refreshed = await connect(svc.port, { token: shortLived });
      const control = await connect(svc.port, { token: shortLived, via: "protocol" });

      const fresh = await token(me, "1h");
      refreshed.send({ type: "auth", ref: "a1", token: fresh });
      const authed = await refreshed.nextOfType("authed");
      const exp = (JSON.parse(Buffer.from(fresh.split(".")[1], "base64url").toString()) as { exp: number }).exp;
      expect(authed).toEqual({ type: "authed", ref: "a1", exp });

      // The control closes when the first token runs out ...
      expect((await control.closed).code).toBe(CLOSE.TOKEN_EXPIRED);
      // ... after which the refreshed session still serves.
      refreshed.send({ type: "fetch", ref: "f1" });
      expect(await refreshed.nextOfType("messages")).toEqual({ type: "messages", ref: "f1", messages: [] });
      await refreshed.close();
    }, 15_000);

    it("a bad token or another identity's token gets an error frame; the old token still expires with 4002", async () => {
      const me = user("keep");
      const socket = await connect(svc.port, { token: await token(me, "3s") });

      socket.send({ type: "auth", ref: "bad", token: "not-a-jwt" });
      expect(await socket.next((f: Frame) => f.ref === "bad")).toMatchObject({ type: "error", ref: "bad", code: "TOKEN_INVALID" });
      socket.send({ type: "auth", ref: "other", token: await token(user("someone-else"), "1h") });
      expect(await socket.next((f: Frame) => f.ref === "other")).toMatchObject({ type: "error", ref: "other", code: "FORBIDDEN" });
      socket.send({ type: "auth", ref: "expired", token: await token(me, "-1m") });
      expect(await socket.next((f: Frame) => f.ref === "expired")).toMatchObject({ type: "error", ref: "expired", code: "TOKEN_EXPIRED" });
      socket.send({ type: "auth", ref: "shape" });
      expect(await socket.next((f: Frame) => f.ref === "shape")).toMatchObject({ type: "error", ref: "shape", code: "INVALID_FRAME" });

      // Still served meanwhile, then closed by the old token's expiry.
      socket.send({ type: "fetch", ref: "f1" });
      expect(await socket.nextOfType("messages")).toMatchObject({ ref: "f1" });
      expect((await socket.closed).code).toBe(CLOSE.TOKEN_EXPIRED);
      expect(socket.frames.some((f) => f.type === "authed")).toBe(false);
    }, 15_000);
  });
}
