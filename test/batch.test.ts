import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "./contracts/fixture.ts";
import { envelope, http } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";

/** `POST /send/batch` over HTTP on both engines, and across kill -9 (issue 20). */

const RUN = Math.random().toString(36).slice(2, 8);
const recipient = (i: number) => `urn:sm:user:batch-${RUN}-${i}`;

/** Ten ways to be refused, each with the code `POST /send` would answer. */
const INVALID: Array<[unknown, string]> = [
  [{ recipientId: "urn:sm:user:x" }, "INVALID_ENVELOPE"],
  [{ recipientId: "not-a-urn", encryptedData: "aGk=" }, "INVALID_ENVELOPE"],
  [{ recipientId: "urn:sm:user:x", encryptedData: "aGk=", senderId: "urn:sm:user:mallory" }, "SENDER_MISMATCH"],
  [{ recipientId: "urn:sm:user:x", encryptedData: "A".repeat(70_000) }, "ENVELOPE_TOO_LARGE"],
  [{ recipientId: "urn:sm:user:x", encryptedData: "aGk=", messageId: "bad id!" }, "INVALID_ENVELOPE"],
  [{ recipientId: "urn:sm:user:x", encryptedData: "aGk=", priority: 11 }, "INVALID_ENVELOPE"],
  [42, "INVALID_ENVELOPE"],
  [null, "INVALID_ENVELOPE"],
  [[], "INVALID_ENVELOPE"],
  [{ recipientId: "urn:sm:user:x", encryptedData: "aGk=", surprise: true }, "INVALID_ENVELOPE"],
];

/** 100 envelopes to 100 recipients, items 5, 15, ... 95 invalid; client-chosen ids when `ids`. */
function hundred(tag: string, ids: boolean): unknown[] {
  return Array.from({ length: 100 }, (_, i) =>
    i % 10 === 5 ? INVALID[(i - 5) / 10][0] : envelope(recipient(i) + tag, ids ? { messageId: `m-${tag}-${i}` } : {}),
  );
}

function checkResults(results: Array<{ messageId?: string; error?: { code: string } }>, batch: unknown[]): string[] {
  expect(results).toHaveLength(100);
  const ids: string[] = [];
  results.forEach((r, i) => {
    if (i % 10 === 5) {
      expect(r.messageId, `item ${i}`).toBeUndefined();
      expect(r.error?.code, `item ${i}`).toBe(INVALID[(i - 5) / 10][1]);
    } else {
      expect(r.error, `item ${i}`).toBeUndefined();
      const chosen = (batch[i] as { messageId?: string }).messageId;
      if (chosen !== undefined) expect(r.messageId).toBe(chosen);
      ids.push(r.messageId as string);
    }
  });
  return ids;
}

describe.each(["uws", "ws"] as const)("POST /send/batch on the %s engine", (engine) => {
  let node: InProcessNode;
  let alice: string;
  beforeAll(async () => {
    node = await startInProcess({ ROUTING_GATEWAY_ENGINE: engine, ROUTING_MAX_BATCH_BYTES: "262144" });
    alice = await token("alice");
  });
  afterAll(async () => {
    await node?.stop();
  });

  it("100 envelopes to 100 recipients, 10 invalid: 90 accepted and stored, 10 errors in place", async () => {
    const batch = hundred(`-${engine}-a`, false);
    const res = await http(node.url, "POST", "/send/batch", { token: alice, body: { envelopes: batch } });
    expect(res.status).toBe(200);
    const ids = checkResults(res.body.results as [], batch);
    expect(new Set(ids).size).toBe(90);
    // Each accepted envelope reaches its own recipient's mailbox.
    for (const i of [0, 1, 49, 99]) {
      const who = await token(`batch-${RUN}-${i}-${engine}-a`);
      await waitFor(async () => ((await http(node.url, "GET", "/messages", { token: who })).body.messages?.length ?? 0) === 1, `recipient ${i}`);
    }
  });

  it("with client-chosen ids a resend of the same batch stores nothing twice", async () => {
    const batch = hundred(`-${engine}-b`, true);
    const first = await http(node.url, "POST", "/send/batch", { token: alice, body: { envelopes: batch } });
    const second = await http(node.url, "POST", "/send/batch", { token: alice, body: { envelopes: batch } });
    expect(second.body).toEqual(first.body);
    checkResults(second.body.results as [], batch);
    const probe = await token(`batch-${RUN}-99-${engine}-b`);
    // Something later arrives for the same recipient: then the duplicate would have been there too.
    const later = await http(node.url, "POST", "/send", { token: alice, body: envelope(recipient(99) + `-${engine}-b`, { messageId: "later" }) });
    expect(later.status).toBe(202);
    let ids: string[] = [];
    await waitFor(
      async () => (ids = ((await http(node.url, "GET", "/messages", { token: probe })).body.messages ?? []).map((m) => m.id)).includes("later"),
      "the later message",
    );
    expect(ids.sort()).toEqual([`m--${engine}-b-99`, "later"].sort());
  });

  it("a body that is not {envelopes: [1..100]} is 400; over ROUTING_MAX_BATCH_BYTES 413; no token 401", async () => {
    const one = envelope(recipient(1));
    const bad: Array<[string, string]> = [
      ["not json", "INVALID_JSON"],
      [JSON.stringify([one]), "INVALID_REQUEST"],
      [JSON.stringify({ envelopes: [] }), "INVALID_REQUEST"],
      [JSON.stringify({ envelopes: one }), "INVALID_REQUEST"],
      [JSON.stringify({ envelopes: Array.from({ length: 101 }, () => one) }), "INVALID_REQUEST"],
      [JSON.stringify({ envelopes: [one], extra: 1 }), "INVALID_REQUEST"],
    ];
    for (const [raw, code] of bad) {
      const res = await http(node.url, "POST", "/send/batch", { token: alice, raw });
      expect(res.status, raw.slice(0, 30)).toBe(400);
      expect(res.body.error?.code).toBe(code);
    }
    const big = Array.from({ length: 10 }, () => envelope(recipient(2), { encryptedData: "A".repeat(30_000) }));
    const tooBig = await http(node.url, "POST", "/send/batch", { token: alice, body: { envelopes: big } });
    expect(tooBig.status).toBe(413);
    expect((await http(node.url, "POST", "/send/batch", { body: { envelopes: [one] } })).status).toBe(401);
    const metrics = (await http(node.url, "GET", "/metrics")).text;
    expect(metrics).toMatch(/routing_send_batch_envelopes_count [1-9]/);
    expect(metrics).toMatch(/routing_send_batch_envelopes_bucket\{le="100"\} [1-9]/);
  });
});

describe("POST /send/batch and the send rate", () => {
  let node: InProcessNode | undefined;
  afterEach(async () => {
    await node?.stop();
  });

  it("each envelope counts once: past the burst the rest are RATE_LIMITED in place, and the next /send too", async () => {
    node = await startInProcess({ ROUTING_SEND_RATE_PER_SECOND: "1", ROUTING_SEND_BURST: "10" });
    const alice = await token("alice");
    const batch = Array.from({ length: 30 }, (_, i) => envelope(recipient(i)));
    const res = await http(node.url, "POST", "/send/batch", { token: alice, body: { envelopes: batch } });
    expect(res.status).toBe(200);
    const results = res.body.results as Array<{ messageId?: string; error?: { code: string; retryAfterMs?: number } }>;
    const accepted = results.filter((r) => r.messageId !== undefined).length;
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(accepted).toBeLessThanOrEqual(12);
    for (const r of results.filter((r) => r.error !== undefined)) {
      expect(r.error?.code).toBe("RATE_LIMITED");
      expect(r.error?.retryAfterMs).toBeGreaterThan(0);
    }
    expect((await http(node.url, "POST", "/send", { token: alice, body: envelope(recipient(0)) })).status).toBe(429);
  });
});

describe("POST /send/batch across kill -9 (embedded default, a node process)", () => {
  let service: RunningService | undefined;
  afterEach(async () => {
    await service?.crash().catch(() => {});
    if (service) removeDir(service.dataDir);
  });

  it("kill -9 right after the answer loses none of the 90 accepted", async () => {
    service = await startService();
    const alice = await token("alice");
    const batch = hundred("-crash", false);
    const res = await http(service.url, "POST", "/send/batch", { token: alice, body: { envelopes: batch } });
    expect(res.status).toBe(200);
    const ids = checkResults(res.body.results as [], batch);
    await service.crash();
    const dataDir = service.dataDir;
    service = await startService({}, dataDir);
    const found: string[] = [];
    for (let i = 0; i < 100; i++) {
      if (i % 10 === 5) continue;
      const who = await token(`batch-${RUN}-${i}-crash`);
      let messages: string[] = [];
      await waitFor(
        async () => (messages = ((await http(service!.url, "GET", "/messages", { token: who })).body.messages ?? []).map((m) => m.id)).length > 0,
        `recipient ${i}`,
      );
      found.push(...messages);
    }
    expect(found.sort()).toEqual([...ids].sort());
  }, 60_000);
});
