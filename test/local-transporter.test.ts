import { existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import { afterAll, describe, expect, it } from "vitest";
import { LocalHubTransporter, LocalPeerTransporter, localSocketPath } from "../runtime/local-transporter.ts";
import { removeDir } from "./helpers/service.ts";

const dir = mkdtempSync(join(tmpdir(), "routing-hub-"));
afterAll(() => removeDir(dir));

describe("the local transporter (Unix socket hub in the data dir)", () => {
  it("lets a service-less peer call the hub node's actions and see its services; the socket is 0600 and goes away on stop", async () => {
    const path = localSocketPath(dir);
    expect(path).toBe(join(dir, "repl.sock"));
    const hub = new ServiceBroker({ nodeID: "hub", namespace: "t", logger: false, transporter: new LocalHubTransporter({ path }) });
    hub.createService({ name: "echo", actions: { say: (ctx) => ({ heard: (ctx.params as { word: string }).word, from: ctx.nodeID }) } });
    await hub.start();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    let closed = 0;
    const peer = new ServiceBroker({ nodeID: "peer", namespace: "t", logger: false, transporter: new LocalPeerTransporter({ path, onClose: () => closed++ }) });
    try {
      await peer.start();
      await peer.waitForServices(["echo"], 5000);
      expect(await peer.call("echo.say", { word: "hello" })).toEqual({ heard: "hello", from: "peer" });
      // The hub learns of the peer from its INFO packet, which may still be on its way.
      const available = async () =>
        (await hub.call<Array<{ id: string; available: boolean }>>("$node.list"))
          .filter((n) => n.available)
          .map((n) => n.id)
          .sort();
      for (let until = Date.now() + 5000; (await available()).length < 2 && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
      expect(await available()).toEqual(["hub", "peer"]);
      // A big answer crosses the socket in many chunks.
      hub.createService({ name: "big", actions: { blob: () => "x".repeat(300_000) } });
      await peer.waitForServices(["big"], 5000);
      expect(((await peer.call("big.blob")) as string).length).toBe(300_000);
      await hub.stop();
      await new Promise<void>((resolve) => {
        const t = setInterval(() => closed > 0 && (clearInterval(t), resolve()), 20);
      });
      expect(closed).toBe(1);
      expect(existsSync(path)).toBe(false);
    } finally {
      await peer.stop();
      await hub.stop();
    }
  });

  it("a socket that cannot be bound does not keep the node from starting; it just serves no REPL", async () => {
    const hubTransporter = new LocalHubTransporter({ path: join(dir, "missing", "dir", "repl.sock") });
    const hub = new ServiceBroker({ nodeID: "lonely", namespace: "t2", logger: false, transporter: hubTransporter });
    hub.createService({ name: "echo", actions: { say: () => "ok" } });
    await hub.start();
    try {
      expect(hubTransporter.listening).toBe(false);
      expect(await hub.call("echo.say")).toBe("ok");
    } finally {
      await hub.stop();
    }
  });

  it("a data dir too long for a socket path gets one under the temp dir, derived from the data dir", () => {
    const long = join(dir, "x".repeat(120));
    const path = localSocketPath(long);
    expect(path.startsWith(tmpdir())).toBe(true);
    expect(Buffer.byteLength(path)).toBeLessThanOrEqual(107);
    expect(localSocketPath(long)).toBe(path);
    expect(localSocketPath(long + "y")).not.toBe(path);
  });
});
