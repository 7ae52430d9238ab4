/**
 * What both bare relays do with one send: parse the JSON (the service must too, to find the
 * recipient), and answer like the service does. The frame text itself is forwarded as is: the
 * ceiling has no auth, no storage and no re-encoding.
 */
export interface RelaySend {
  readonly recipientId: string;
  /** The `sent` frame (WebSocket) or the 202 body (HTTP) to answer with. */
  readonly answer: string;
}

interface SendFrame {
  ref?: unknown;
  envelope?: { recipientId?: unknown; messageId?: unknown };
}

let fallbackId = 0;

function idOf(envelope: SendFrame["envelope"]): string {
  return typeof envelope?.messageId === "string" ? envelope.messageId : `relay-${++fallbackId}`;
}

export function parseFrame(text: string): RelaySend | undefined {
  try {
    const frame = JSON.parse(text) as SendFrame;
    const to = frame.envelope?.recipientId;
    if (typeof to !== "string") return undefined;
    return { recipientId: to, answer: `{"type":"sent","ref":${JSON.stringify(frame.ref ?? "")},"messageId":${JSON.stringify(idOf(frame.envelope))}}` };
  } catch {
    return undefined;
  }
}

export function parseBody(text: string): RelaySend | undefined {
  try {
    const envelope = JSON.parse(text) as SendFrame["envelope"];
    const to = envelope?.recipientId;
    if (typeof to !== "string") return undefined;
    return { recipientId: to, answer: `{"messageId":${JSON.stringify(idOf(envelope))}}` };
  } catch {
    return undefined;
  }
}

/** The identity a relay client claims (no auth: the ceiling skips it). */
export function idFromQuery(query: string): string {
  return new URLSearchParams(query).get("id") ?? "";
}
