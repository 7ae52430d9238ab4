/// <reference lib="dom" />
/**
 * The demo chat in the browser: the SDK (client/) for the connection, demo/e2e-crypto.ts for the
 * encryption. Protocol between the two pages, all inside envelopes:
 * - hello: `encryptedData` = base64 of {"t":"hello","pub":<my public key>} (public key material
 *   only), sent on start and answered once per new peer key;
 * - sealed (has `encryptedSymmetricKey`): {"t":"text","text"} or {"t":"receipt","of":<messageId>,"state":"delivered"|"read"}.
 * Delivery state of what I sent: sent (send() resolved: durably accepted), delivered (the peer's
 * page decrypted it), read (the peer's SDK acked it after showing it).
 */
import { RoutingClient, type QueuedMessage } from "../client/src/index.ts";
import { fromBase64, newIdentity, open, seal, toBase64, type KeyIdentity } from "./e2e-crypto.ts";

type Inner = { t: "text"; text: string } | { t: "receipt"; of: string; state: "delivered" | "read" };
const RANK = { sending: 0, sent: 1, delivered: 2, read: 3 } as const;
type Status = keyof typeof RANK;

const params = new URLSearchParams(location.search);
const me = params.get("me") ?? "alice";
const peerName = params.get("peer") ?? (me === "alice" ? "bob" : "alice");
const peer = `urn:demo:user:${peerName}`;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
$("me").textContent = me;
$("peer").textContent = peerName;
$<HTMLAnchorElement>("other").href = `/demo?me=${encodeURIComponent(peerName)}&peer=${encodeURIComponent(me)}`;
const log = $<HTMLUListElement>("log");
const input = $<HTMLInputElement>("text");
const sendButton = $<HTMLButtonElement>("send");

let peerKey: string | undefined;
let answeredKey: string | undefined;
const outgoing = new Map<string, HTMLLIElement>();
/** Text messages handled in the current delivery, to receipt as read once acked. */
const readable = new Set<string>();

function setStatus(li: HTMLLIElement, status: Status): void {
  const current = (li.dataset.status ?? "sending") as Status;
  if (RANK[status] < RANK[current]) return;
  li.dataset.status = status;
  (li.querySelector(".status") as HTMLElement).textContent = status;
}

function show(dir: "in" | "out", id: string, text: string): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.dir = dir;
  li.dataset.id = id;
  const bubble = document.createElement("span");
  bubble.className = "bubble";
  bubble.textContent = text;
  const status = document.createElement("span");
  status.className = "status";
  li.append(bubble, status);
  log.append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

async function token(): Promise<string> {
  const res = await fetch("/demo/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: me }) });
  if (!res.ok) throw new Error(`demo sign-in failed: ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

// Keys first: the client may hand over messages as soon as it is connected.
const identity: KeyIdentity = await newIdentity();
const client = new RoutingClient({ url: location.origin, token, delivery: "poke" });

client.on("state", (state) => {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = state;
});

function sendHello(): Promise<string> {
  return client.send({ recipientId: peer, encryptedData: toBase64(new TextEncoder().encode(JSON.stringify({ t: "hello", pub: identity.publicKey }))) });
}

async function sendSealed(inner: Inner, messageId?: string): Promise<string> {
  if (!peerKey) throw new Error("no key for the peer yet");
  return client.send({ recipientId: peer, messageId, ...(await seal(JSON.stringify(inner), peerKey)) });
}

client.on("message", async (m: QueuedMessage) => {
  const env = m.envelope;
  if (env.senderId !== peer) return; // only this conversation
  if (!env.encryptedSymmetricKey) {
    const hello = JSON.parse(new TextDecoder().decode(fromBase64(env.encryptedData))) as { t: string; pub?: string };
    if (hello.t !== "hello" || typeof hello.pub !== "string") return;
    peerKey = hello.pub;
    $("key").dataset.key = "ready";
    $("key").textContent = "end-to-end keys ready";
    sendButton.disabled = false;
    if (answeredKey !== hello.pub) {
      answeredKey = hello.pub;
      await sendHello();
    }
    return;
  }
  let inner: Inner;
  try {
    inner = JSON.parse(await open({ encryptedData: env.encryptedData, encryptedSymmetricKey: env.encryptedSymmetricKey }, identity)) as Inner;
  } catch {
    // Sealed to a key of an earlier visit of this page (keys live as long as the page): unreadable for good.
    show("in", m.id, "(encrypted for an earlier session of this page)");
    return;
  }
  if (inner.t === "text") {
    show("in", m.id, inner.text);
    readable.add(m.id);
    await sendSealed({ t: "receipt", of: m.id, state: "delivered" });
  } else {
    const li = outgoing.get(inner.of);
    if (li) setStatus(li, inner.state);
  }
});

// Read = acked: the SDK acks a message once its handler resolved (it was shown).
client.on("acked", (ids) => {
  for (const id of ids) {
    if (!readable.delete(id)) continue;
    void sendSealed({ t: "receipt", of: id, state: "read" });
  }
});

$<HTMLFormElement>("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || !peerKey) return;
  input.value = "";
  const id = crypto.randomUUID();
  const li = show("out", id, text);
  outgoing.set(id, li);
  setStatus(li, "sending");
  await sendSealed({ t: "text", text }, id);
  setStatus(li, "sent");
});

await sendHello();
document.body.dataset.ready = "true";
