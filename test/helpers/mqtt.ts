import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { Frame } from "./clients.ts";

export interface Received {
  readonly topic: string;
  readonly frame: Frame;
}

/** An mqtt.js client that records every message (JSON frames) and lets a test wait for one. */
export class MqttTestClient {
  readonly client: MqttClient;
  readonly received: Received[] = [];
  #waiters: Array<{ match: (r: Received) => boolean; resolve: (r: Received) => void }> = [];
  /** Resolves when the connection closes (the server dropped it, or the test ended it). */
  readonly closed: Promise<void>;

  constructor(client: MqttClient) {
    this.client = client;
    client.on("message", (topic, payload) => {
      let frame: Frame;
      try {
        frame = JSON.parse(payload.toString("utf8")) as Frame;
      } catch {
        frame = { type: "<not json>" };
      }
      const r = { topic, frame };
      this.received.push(r);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(r)) return true;
        w.resolve(r);
        return false;
      });
    });
    this.closed = new Promise((resolve) => client.once("close", () => resolve()));
  }

  /** The first recorded or future message matching `match`. */
  next(match: (r: Received) => boolean, timeoutMs = 15_000): Promise<Received> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching MQTT message within ${timeoutMs} ms; got ${JSON.stringify(this.received)}`)), timeoutMs);
      this.#waiters.push({
        match,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  }

  frames(type: string): Frame[] {
    return this.received.filter((r) => r.frame.type === type).map((r) => r.frame);
  }

  end(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** Connects (no reconnects: a refusal or a drop is final); rejects with mqtt.js' error, whose `code` is the CONNACK return code. */
export async function mqttConnect(url: string, options: IClientOptions = {}): Promise<MqttTestClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 15_000, ...options });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", (err) => {
      client.end(true);
      reject(err);
    });
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
  // Swallow later errors (a refused publish closes the connection): tests look at `closed`.
  client.on("error", () => {});
  return new MqttTestClient(client);
}

/** The CONNACK return code of a refused connection (undefined if it connected). */
export async function connackRefusal(url: string, options: IClientOptions): Promise<number | undefined> {
  try {
    const c = await mqttConnect(url, options);
    await c.end();
    return undefined;
  } catch (err) {
    return (err as { code?: number }).code;
  }
}
