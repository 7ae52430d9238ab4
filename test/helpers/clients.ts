import WebSocket from "ws";

export interface Frame {
  type: string;
  [key: string]: unknown;
}

/** A WebSocket client that records every frame and lets a test wait for the next matching one. */
export class TestSocket {
  readonly frames: Frame[] = [];
  readonly ws: WebSocket;
  #waiters: Array<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  #cursor = 0;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const frame = JSON.parse(data.toString()) as Frame;
      this.frames.push(frame);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(frame)) return true;
        w.resolve(frame);
        return false;
      });
    });
    this.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** The first frame at or after the cursor matching `match` (default: any), waiting up to `timeoutMs`. */
  next(match: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    for (let i = this.#cursor; i < this.frames.length; i++) {
      if (match(this.frames[i])) {
        this.#cursor = i + 1;
        return Promise.resolve(this.frames[i]);
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`)), timeoutMs);
      this.#waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          this.#cursor = this.frames.length;
          resolve(f);
        },
      });
    });
  }

  nextOfType(type: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === type, timeoutMs);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

export interface ConnectOptions {
  readonly token?: string;
  readonly via?: "header" | "protocol";
  readonly delivery?: "poke" | "push";
  readonly autoPong?: boolean;
}

/** Opens /connect; resolves the socket once open, or rejects with the HTTP status of a refused upgrade. */
export function connect(port: number, options: ConnectOptions): Promise<TestSocket> {
  const query = options.delivery ? `?delivery=${options.delivery}` : "";
  const url = `ws://127.0.0.1:${port}/connect${query}`;
  const viaProtocol = options.via === "protocol" && options.token;
  const ws = viaProtocol
    ? new WebSocket(url, [options.token as string], { autoPong: options.autoPong ?? true })
    : new WebSocket(url, { headers: options.token ? { authorization: `Bearer ${options.token}` } : {}, autoPong: options.autoPong ?? true });
  const socket = new TestSocket(ws);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(socket));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body })));
    });
    ws.once("error", (err) => reject(err));
  });
}

export interface QueuedMessageBody {
  id: string;
  envelope: Record<string, unknown>;
  queuedAt: string;
}

/** The shapes the contract answers with, loosely: tests assert the values. */
export interface JsonBody {
  error?: { code: string; message: string };
  messages?: QueuedMessageBody[];
  messageId?: string;
  [key: string]: unknown;
}

export interface HttpResult {
  status: number;
  body: JsonBody;
  text: string;
  headers: Headers;
}

export async function http(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; raw?: string; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers["content-type"] = "application/json";
  const signal = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const res = await fetch(base + path, { method, headers, body, signal });
  const text = await res.text();
  let parsed: JsonBody;
  try {
    parsed = text ? (JSON.parse(text) as JsonBody) : {};
  } catch {
    parsed = {};
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}

let seq = 0;
/** A valid envelope with a random-looking opaque payload. */
export function envelope(recipientId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  return {
    recipientId,
    encryptedData: Buffer.from(`secret-payload-${seq}-${Math.random()}`).toString("base64"),
    encryptedSymmetricKey: Buffer.from(`key-${seq}`).toString("base64"),
    signature: Buffer.from(`sig-${seq}`).toString("base64"),
    ...extra,
  };
}
