import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { collectMailboxes, offer, openSenders, type LoadTarget } from "../bench/lib/overload-load.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";

/*
 * kill -9 in the middle of an overload (issue 14): the embedded default is flooded over WebSocket,
 * HTTP and MQTT at once, far past its ingress bound, and killed while sends are in flight. After a
 * restart on the same data dir, every send that was answered `sent`, 202 or PUBACK before the kill
 * is in its recipient's mailbox.
 */
describe("kill -9 during overload", () => {
  const started: RunningService[] = [];
  afterAll(async () => {
    for (const s of started) await s.stop();
    if (started[0]) removeDir(started[0].dataDir);
  });

  it("loses nothing that was accepted", async () => {
    const env = { ROUTING_INGRESS_MAX_PENDING: "256", ROUTING_SEND_RATE_PER_SECOND: "0" };
    const first = await startService(env);
    started.push(first);
    const mqttPort = /routing ready:.*\bmqtt=(\d+)/.exec(first.output())?.[1];
    const target: LoadTarget = { httpUrl: first.url, wsUrl: `ws://127.0.0.1:${first.port}`, mqttUrl: `mqtt://127.0.0.1:${mqttPort}` };
    const run = randomBytes(3).toString("hex");
    const names = Array.from({ length: 16 }, (_, i) => `crash-${run}-r${i}`);
    const senders = await openSenders(
      target,
      await Promise.all(Array.from({ length: 16 }, (_, i) => token(`crash-${run}-s${i}`))),
      await Promise.all(Array.from({ length: 4 }, (_, i) => token(`crash-${run}-m${i}`))),
      names.map((n) => `urn:sm:user:${n}`),
    );
    // Killed once a good share has been accepted and refusals show it is overloaded.
    let killed: () => void = () => {};
    const stop = new Promise<void>((resolve) => (killed = resolve));
    const load = offer(senders, target, { perSecond: 15_000, durationMs: 60_000, httpShare: 0.05, mqttShare: 0.05, stop, tag: `${run}.c` });
    // Killed once enough was accepted under refusals, or after 20 s of load at the latest (a busy machine).
    const killBy = Date.now() + 20_000;
    const watch = (async () => {
      while (Date.now() < killBy) {
        const m = await fetch(`${first.url}/metrics`, { signal: AbortSignal.timeout(2_000) })
          .then((r) => r.text())
          .catch(() => "");
        const accepted = [...m.matchAll(/^routing_envelopes_accepted_total\{[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
        const refused = /code="OVERLOADED"[^\n]* (\d+)/.exec(m);
        if (accepted >= 500 && refused !== null && Number(refused[1]) > 0) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await watch;
    await first.crash();
    killed();
    const result = await load;
    await senders.close();
    expect(result.accepted.length).toBeGreaterThan(0);
    expect(result.refused.OVERLOADED ?? 0).toBeGreaterThan(0);

    const second = await startService(env, first.dataDir);
    started.push(second);
    const found = await collectMailboxes(second.url, await Promise.all(names.map((n) => token(n))), new Set(result.accepted));
    const lost = result.accepted.filter((id) => !found.has(id));
    expect(lost).toEqual([]);
  }, 120_000);
});
