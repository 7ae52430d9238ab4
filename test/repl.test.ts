import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mintDevToken } from "../auth/mint.ts";
import { connect, envelope, http } from "./helpers/clients.ts";
import { listeningPortsOf, processTree } from "./helpers/proc-net.ts";
import { NpmRun } from "./helpers/npm-run.ts";
import { removeDir, startService, token } from "./helpers/service.ts";

const dataDir = mkdtempSync(join(tmpdir(), "routing-repl-"));
afterAll(() => removeDir(dataDir));

describe("npm run repl attaches to the running npm start (embedded default)", () => {
  it("lists a live WebSocket session by URN and reads its actor state while every message to that user reaches the socket", async () => {
    // The embedded default: no backend, no transporter, no JWT setting (a dev secret is created in the data dir).
    const env = { ROUTING_DATA_DIR: dataDir, ROUTING_HTTP_PORT: "0", ROUTING_MQTT_PORT: "0", ROUTING_HOST: "127.0.0.1" };
    const node = new NpmRun(["start"], env);
    let sending = true;
    let sender: Promise<void> | undefined;
    try {
      const port = Number((await node.waitFor(/routing ready: http=(\d+) /))[1]);
      const url = `http://127.0.0.1:${port}`;
      const secret = readFileSync(join(dataDir, "dev-jwt-secret"), "utf8").trim();
      const bob = `urn:sm:user:repl-bob-${process.pid}`;
      const alice = await mintDevToken(secret, "repl-alice");
      const inbox = await connect(port, { token: await mintDevToken(secret, bob), delivery: "push" });
      const delivered = new Set<string>();
      inbox.ws.on("message", (data) => {
        const frame = JSON.parse(String(data)) as { type: string; message?: { id: string } };
        if (frame.type === "message" && frame.message) delivered.add(frame.message.id);
      });

      // Alice keeps sending to Bob the whole time the REPL is attached.
      const accepted: string[] = [];
      const refused: number[] = [];
      sender = (async () => {
        for (let i = 0; (sending || i < 50) && refused.length === 0; i++) {
          const res = await http(url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: `repl-${i}` }) });
          if (res.status === 202) accepted.push(res.body.messageId as string);
          else refused.push(res.status);
        }
      })();

      const repl = new NpmRun(["run", "repl"], { ROUTING_DATA_DIR: dataDir });
      await repl.waitFor(/attached to node \S+ \(pid \d+\)/);
      const sessions = await repl.type(`sessions ${bob}`, /1 session on 1 node for .*\n(.*\n){2}.*online/);
      const row = sessions.split("\n").find((l) => l.includes(bob) && /[0-9a-f-]{36}/.test(l))!;
      expect(row).toMatch(/ ws +push +online/);
      const sessionId = /([0-9a-f-]{36})/.exec(row)![1]!;
      const actors = await repl.type("actors", new RegExp(`session ${sessionId} +online\\S* +${bob} ws/push`));
      expect(actors).toMatch(/router +running/);
      // The REPL's own `call` reaches the live node's actions too (and shows the same actor state).
      const call = await repl.type(`call gateway.sessions --urn ${bob}`, /Response:[\s\S]*\]\s*\n/);
      expect(call).toContain(sessionId);
      expect(call).toMatch(/state: \{ online: '\w+' \}|state: 'online/);
      // It attached as a node of its own and listens on no TCP port.
      expect(listeningPortsOf(processTree(repl.proc.pid!))).toEqual([]);
      repl.proc.stdin.write("quit\n");
      expect(await repl.exited).toBe(0);

      sending = false;
      await sender;
      expect(refused).toEqual([]);
      const expected = new Set(accepted);
      expect(expected.size).toBeGreaterThanOrEqual(50);
      // Every accepted message reaches the socket (waiting on the deliveries themselves, bounded).
      for (let until = Date.now() + 30_000; [...expected].some((id) => !delivered.has(id)) && Date.now() < until;) await new Promise((r) => setTimeout(r, 100));
      expect([...expected].filter((id) => !delivered.has(id))).toEqual([]);
      // The node is untouched by the REPL leaving.
      expect((await http(url, "POST", "/send", { token: alice, body: envelope(bob, { messageId: "after-repl" }) })).status).toBe(202);
      expect(((await inbox.next((f) => f.type === "message" && (f.message as { id: string }).id === "after-repl", 10_000)).message as { id: string }).id).toBe(
        "after-repl",
      );
      await inbox.close();
    } finally {
      sending = false;
      await sender?.catch(() => {});
      await node.stop();
    }

    const orphan = new NpmRun(["run", "repl"], { ROUTING_DATA_DIR: dataDir });
    expect(await orphan.exited).toBe(1);
    expect(orphan.output).toContain(`no running node for data dir ${dataDir}`);
  }, 120_000);
});

describe("npm run repl with ROUTING_TRANSPORTER (a cluster)", () => {
  it("joins through the transporter and sees the node's live session; with no node in the namespace it says so and exits 1", async () => {
    const cluster = { ROUTING_TRANSPORTER: "nats://127.0.0.1:4222", ROUTING_NAMESPACE: `repl-${process.pid}-${Date.now()}` };
    const svc = await startService(cluster);
    try {
      const carol = `urn:sm:user:repl-carol-${process.pid}`;
      const socket = await connect(svc.port, { token: await token(carol) });
      // Another data dir: through a transporter the REPL needs no local node.
      const repl = new NpmRun(["run", "repl"], { ...cluster, ROUTING_DATA_DIR: join(dataDir, "elsewhere") });
      await repl.waitFor(/attached to namespace "repl-[^"]+" through nats:/);
      const out = await repl.type(`sessions ${carol}`, /1 session on 1 node for .*\n(.*\n){2}.*online/);
      expect(out.split("\n").find((l) => l.includes(carol) && /[0-9a-f-]{36}/.test(l))).toMatch(/ ws +poke +online/);
      repl.proc.stdin.write("quit\n");
      expect(await repl.exited).toBe(0);
      await socket.close();
    } finally {
      await svc.stop();
      removeDir(svc.dataDir);
    }
    const lonely = new NpmRun(["run", "repl"], cluster);
    expect(await lonely.exited).toBe(1);
    expect(lonely.output).toContain(`no running node answered in namespace "${cluster.ROUTING_NAMESPACE}"`);
  }, 120_000);
});
