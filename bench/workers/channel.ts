/** What the load loop needs from a protocol: send for a pair, and hear back deliveries and refusals. */
import type { PairSpec, TargetSpec, Variant } from "./messages.ts";

/** Where a channel reports; the loop swaps it per run so late deliveries of a finished run are ignored. */
export interface Sink {
  delivered(pair: number, messageId: string): void;
  refused(pair: number): void;
}

export interface Channel {
  /** Sockets that closed right after their handshake and were reopened (see frames-channel.ts). */
  readonly reopened: number;
  send(pair: number, messageId: string): void;
  /** Sends what is batched (acks); called when a run stops sending. */
  flush(): void;
  close(): Promise<void>;
}

export interface ChannelOptions {
  readonly target: TargetSpec;
  readonly variant: Variant;
  readonly pairs: readonly PairSpec[];
  readonly httpConnections: number;
  /** Read on every event, so the loop can swap it. */
  readonly sink: () => Sink;
}

/** Opaque "ciphertext" of the requested size, valid base64 characters. */
export function payloadOf(bytes: number): string {
  return Buffer.alloc(Math.ceil((bytes * 3) / 4) + 3, 0x5a)
    .toString("base64")
    .slice(0, bytes);
}

const MESSAGE_ID_KEY = Buffer.from('"messageId":"');
const QUOTE = 0x22;

/** The first `"messageId":"..."` of a frame, without decoding or parsing the rest of it. */
export function messageIdIn(data: Buffer, from = 0): string | undefined {
  const at = data.indexOf(MESSAGE_ID_KEY, from);
  if (at < 0) return undefined;
  const start = at + MESSAGE_ID_KEY.length;
  const end = data.indexOf(QUOTE, start);
  return end < 0 ? undefined : data.toString("latin1", start, end);
}

/** Opens `count` things with at most `parallel` handshakes in flight. */
export async function openAll<T>(count: number, parallel: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      out[i] = await open(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, lane));
  return out;
}
