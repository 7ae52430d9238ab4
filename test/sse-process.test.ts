import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "./contracts/fixture.ts";
import { envelope, http } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { openStream } from "./helpers/sse.ts";

/** Event streams across drain, kill -9, slow readers and uWS's idle timeout (issue 20). */

let running: RunningService[] = [];
let inProcess: InProcessNode | undefined;
afterEach(async () => {
  for (const s of running) await s.crash().catch(() => {});
  for (const s of running) removeDir(s.dataDir);
  running = [];
  await inProcess?.stop();
  inProcess = undefined;
});

describe.each(["uws", "ws"] as const)("event streams of a node process (%s engine)", (engine) => {
  it("SIGTERM ends the stream with event: close {code: 1001}; no ticket or token reaches the log", async () => {
    const service = await startService({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_LOG_LEVEL: "debug" });
    running.push(service);
    const bob = await token("bob");
    const issued = await http(service.url, "POST", "/tickets", { token: bob });
    const ticket = issued.body.ticket as string;
    const stream = await openStream(`${service.url}/events?ticket=${ticket}`);
    expect(stream.status).toBe(200);
    const refused = await openStream(`${service.url}/events?token=${bob}`);
    expect(refused.status).toBe(401);
    // Online before the drain (the ready line is out; the session is registered once its first ping lands).
    await waitFor(async () => (await http(service.url, "GET", "/metrics")).text.includes('routing_sessions{protocol="sse",state="online"} 1'), "stream online");
    const code = await service.stop();
    expect(code).toBe(0);
    const close = await stream.next("close");
    expect(JSON.parse(close.data)).toEqual({ code: 1001 });
    await waitFor(() => stream.ended(), "stream ended");
    // Request lines are logged (debug), but never with a ticket or a token in them.
    expect(service.output()).toContain("/tickets");
    expect(service.output()).not.toContain(ticket);
    expect(service.output()).not.toContain(bob);
  });

  it("kill -9 loses nothing accepted while the recipient streamed; a new stream and a pull get it all", async () => {
    const service = await startService({ ROUTING_GATEWAY_ENGINE: engine });
    running.push(service);
    const [alice, bob] = [await token("alice"), await token("bob")];
    const stream = await openStream(`${service.url}/events?delivery=push`, { authorization: `Bearer ${bob}` });
    const accepted: string[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const res = await http(service.url, "POST", "/send", { token: alice, body: envelope("urn:sm:user:bob") });
        expect(res.status).toBe(202);
        accepted.push(res.body.messageId as string);
      }),
    );
    await service.crash();
    await waitFor(() => stream.ended(), "stream cut by the crash");
    const again = await startService({ ROUTING_GATEWAY_ENGINE: engine }, service.dataDir);
    running.push(again);
    const next = await openStream(`${again.url}/events?ticket=${(await http(again.url, "POST", "/tickets", { token: bob })).body.ticket as string}`);
    expect(next.status).toBe(200);
    const fetched = await http(again.url, "GET", "/messages?limit=500", { token: bob });
    expect(new Set(fetched.body.messages!.map((m) => m.id))).toEqual(new Set(accepted));
    next.close();
  });
});

describe.each(["uws", "ws"] as const)("event stream limits (%s engine)", (engine) => {
  it("a reader that stops reading is cut once its buffer passes the bound, as 4008 ends a socket", async () => {
    inProcess = await startInProcess({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_WS_MAX_BUFFER_BYTES: "65536", ROUTING_SEND_RATE_PER_SECOND: "0" });
    const [alice, bob] = [await token("alice"), await token("bob")];
    // A raw socket that sends the request and never reads the answer.
    const socket = net.connect(inProcess.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.pause();
    let closed = false;
    socket.on("close", () => (closed = true));
    socket.on("error", () => {});
    socket.write(`GET /events?delivery=push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob}\r\n\r\n`);
    const sessions = inProcess.node.sessions;
    await waitFor(() => sessions.sessions().some((s) => s.protocol === "sse" && s.isOnline()), "stream online");
    const big = Buffer.alloc(60_000, 7).toString("base64").slice(0, 60_000);
    const scrape = async () => (await http(inProcess!.url, "GET", "/metrics")).text;
    for (let round = 0; round < 100 && !/routing_session_closes_total\{code="4008"\} [1-9]/.test(await scrape()); round++) {
      await Promise.all(
        Array.from({ length: 10 }, () =>
          http(inProcess!.url, "POST", "/send", { token: alice, body: envelope("urn:sm:user:bob", { encryptedData: big, isEphemeral: true }) }),
        ),
      );
    }
    expect(await scrape()).toMatch(/routing_session_closes_total\{code="4008"\} [1-9]/);
    await waitFor(() => sessions.sessions().length === 0, "session gone");
    socket.resume();
    await waitFor(() => closed, "connection closed");
  });
});

describe("uWS idle timeout", () => {
  it("an idle stream outlives uWS's 10 s HTTP timeout (heartbeat 30 s)", async () => {
    inProcess = await startInProcess({ ROUTING_GATEWAY_ENGINE: "uws" });
    const stream = await openStream(`${inProcess.url}/events`, { authorization: `Bearer ${await token("dave")}` });
    expect(stream.status).toBe(200);
    // Something later arrives: an event sent after 12 s of silence reaches the same stream.
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    const res = await http(inProcess.url, "POST", "/send", { token: await token("erin"), body: envelope("urn:sm:user:dave") });
    expect(res.status).toBe(202);
    await stream.next("poke");
    expect(stream.ended()).toBe(false);
    stream.close();
  }, 30_000);
});
