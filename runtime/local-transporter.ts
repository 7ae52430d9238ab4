import { createHash } from "node:crypto";
import { chmodSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Transporters } from "moleculer";

/*
 * A Moleculer transporter over a Unix socket, so a local tool (`npm run repl`) joins the running node
 * as a Moleculer node of its own on the embedded default, where no transporter is configured.
 *
 * The node serves the socket (LocalHubTransporter) and relays packets between itself and whoever
 * connected (LocalPeerTransporter), by topic, as a one-node NATS would. Nothing listens on the
 * network: the socket is a file in the data dir (or, when that path is too long for a socket, under
 * the temp dir with a name derived from the data dir), mode 0600, so only the node's own user can
 * attach. The peer hosts no service, so it never takes a request, an event or ingress work: it only
 * calls the node's actions.
 *
 * Wire: frames of [kind u8][topic length u16][topic][data length u32][data]; kind 1 subscribes the
 * sender to the topic (no data), kind 2 publishes the data on the topic.
 */

const SUB = 1;
const PUB = 2;
/** Largest Unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** Where the node of this data dir serves its local transporter. */
export function localSocketPath(dataDir: string): string {
  const inDir = join(dataDir, "repl.sock");
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH) return inDir;
  return join(tmpdir(), `routing-repl-${createHash("sha256").update(dataDir).digest("hex").slice(0, 16)}.sock`);
}

function frame(kind: number, topic: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const t = Buffer.from(topic);
  const out = Buffer.allocUnsafe(3 + t.length + 4 + data.length);
  out.writeUInt8(kind, 0);
  out.writeUInt16BE(t.length, 1);
  t.copy(out, 3);
  out.writeUInt32BE(data.length, 3 + t.length);
  data.copy(out, 7 + t.length);
  return out;
}

/** Splits a byte stream into frames; calls `onFrame` for each complete one. */
function frameReader(onFrame: (kind: number, topic: string, data: Buffer) => void): (chunk: Buffer) => void {
  let buffered: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 3) return;
      const topicLength = buffered.readUInt16BE(1);
      if (buffered.length < 3 + topicLength + 4) return;
      const dataLength = buffered.readUInt32BE(3 + topicLength);
      const end = 3 + topicLength + 4 + dataLength;
      if (buffered.length < end) return;
      const kind = buffered.readUInt8(0);
      const topic = buffered.subarray(3, 3 + topicLength).toString();
      const data = buffered.subarray(3 + topicLength + 4, end);
      buffered = buffered.subarray(end);
      onFrame(kind, topic, data);
    }
  };
}

/** The Base transporter's members this file uses (its typings declare only the methods). */
interface BaseMembers {
  getTopicName(cmd: string, nodeID?: string): string;
  receive(cmd: string, data: Buffer): Promise<void>;
  onConnected(wasReconnect?: boolean): Promise<unknown>;
  readonly logger: { warn(message: string): void };
}

/** Served by the node: relays packets between the node and the peers attached to its socket. */
export class LocalHubTransporter extends Transporters.Base {
  readonly path: string;
  #server: Server | undefined;
  /** Topics this node subscribed to, with their Moleculer command. */
  readonly #own = new Map<string, string>();
  readonly #peers = new Map<Socket, Set<string>>();

  constructor(opts: { path: string }) {
    super(opts);
    this.path = opts.path;
  }

  /** Whether the socket is being served (false if it could not be bound: the node runs on without it). */
  get listening(): boolean {
    return this.#server !== undefined;
  }

  override async connect(): Promise<void> {
    try {
      // We hold the data dir's lock, so a socket file left here is a crashed predecessor's.
      rmSync(this.path, { force: true });
      const server = createServer((socket) => this.#attach(socket));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.path, () => {
          server.off("error", reject);
          resolve();
        });
      });
      chmodSync(this.path, 0o600);
      this.#server = server;
    } catch (err) {
      // Never fail (Moleculer would retry the connect forever and the node would not start): a node
      // without its REPL socket still routes; `npm run repl` then says it cannot attach.
      (this as unknown as BaseMembers).logger.warn(
        `REPL socket ${this.path} unavailable (${err instanceof Error ? err.message : String(err)}): npm run repl cannot attach`,
      );
    }
    await (this as unknown as BaseMembers).onConnected();
  }

  override async disconnect(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#peers.keys()) socket.destroy();
    this.#peers.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  override async subscribe(cmd: string, nodeID?: string): Promise<void> {
    this.#own.set((this as unknown as BaseMembers).getTopicName(cmd, nodeID), cmd);
  }

  override async send(topic: string, data: Buffer): Promise<void> {
    this.#deliver(topic, data, undefined);
  }

  #attach(socket: Socket): void {
    const topics = new Set<string>();
    this.#peers.set(socket, topics);
    socket.on(
      "data",
      frameReader((kind, topic, data) => {
        if (kind === SUB) topics.add(topic);
        else if (kind === PUB) this.#deliver(topic, data, socket);
      }),
    );
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.#peers.delete(socket));
  }

  /** To this node if it subscribed, and to every other peer that did; never back to the sender. */
  #deliver(topic: string, data: Buffer, from: Socket | undefined): void {
    const cmd = this.#own.get(topic);
    if (cmd !== undefined && from !== undefined) void (this as unknown as BaseMembers).receive(cmd, data);
    let bytes: Buffer | undefined;
    for (const [peer, topics] of this.#peers) {
      if (peer === from || !topics.has(topic)) continue;
      peer.write((bytes ??= frame(PUB, topic, data)));
    }
  }
}

/** Used by a local tool: attaches to the hub of a running node. `onClose` runs when the node goes away. */
export class LocalPeerTransporter extends Transporters.Base {
  readonly path: string;
  readonly #onClose: () => void;
  #socket: Socket | undefined;
  readonly #own = new Map<string, string>();
  #closing = false;

  constructor(opts: { path: string; onClose: () => void }) {
    super(opts);
    this.path = opts.path;
    this.#onClose = opts.onClose;
  }

  override async connect(): Promise<void> {
    const socket = createConnection(this.path);
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.on(
      "data",
      frameReader((kind, topic, data) => {
        const cmd = this.#own.get(topic);
        if (kind === PUB && cmd !== undefined) void (this as unknown as BaseMembers).receive(cmd, data);
      }),
    );
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      if (!this.#closing) this.#onClose();
    });
    this.#socket = socket;
    await (this as unknown as BaseMembers).onConnected();
  }

  override async disconnect(): Promise<void> {
    this.#closing = true;
    const socket = this.#socket;
    if (socket) await new Promise<void>((resolve) => socket.end(() => resolve()));
  }

  override async subscribe(cmd: string, nodeID?: string): Promise<void> {
    const topic = (this as unknown as BaseMembers).getTopicName(cmd, nodeID);
    this.#own.set(topic, cmd);
    this.#socket?.write(frame(SUB, topic));
  }

  override async send(topic: string, data: Buffer): Promise<void> {
    this.#socket?.write(frame(PUB, topic, data));
  }
}
