/**
 * A load worker thread: holds the sender and receiver clients of its share of the pairs for
 * every open contender (so rounds can alternate between contenders) and runs loads on request.
 * The coordinator talks to it with `Command`s (bench/workers/messages.ts).
 */
import { parentPort } from "node:worker_threads";
import type { Channel, ChannelOptions, Sink } from "./channel.ts";
import { openFramesChannel } from "./frames-channel.ts";
import { runLoad } from "./load-loop.ts";
import type { Command } from "./messages.ts";
import { openMqttChannel } from "./mqtt-channel.ts";
import { openSocketIoChannel } from "./socketio-channel.ts";

interface Open {
  readonly channel: Channel;
  readonly pairs: number;
  /** The channel reads the sink through this holder, so a run can swap it. */
  readonly holder: { sink: Sink };
}

const open = new Map<string, Open>();
const idle: Sink = { delivered() {}, refused() {} };

function opener(o: ChannelOptions): Promise<Channel> {
  switch (o.target.protocol) {
    case "frames":
      return openFramesChannel(o);
    case "socketio":
      return openSocketIoChannel(o);
    case "mqtt":
      return openMqttChannel(o);
  }
}

async function handle(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case "open": {
      const holder = { sink: idle };
      const channel = await opener({
        target: cmd.target,
        variant: cmd.variant,
        pairs: cmd.pairs,
        httpConnections: cmd.httpConnections,
        sink: () => holder.sink,
      });
      open.set(cmd.key, { channel, pairs: cmd.pairs.length, holder });
      return channel.reopened;
    }
    case "run": {
      const entry = open.get(cmd.key);
      if (!entry) throw new Error(`no open channel ${cmd.key}`);
      return runLoad(entry.channel, entry.pairs, (sink) => (entry.holder.sink = sink), cmd);
    }
    case "close": {
      const entry = open.get(cmd.key);
      open.delete(cmd.key);
      await entry?.channel.close();
      return null;
    }
  }
}

parentPort?.on("message", (cmd: Command) => {
  handle(cmd).then(
    (value) => {
      const transfer = value && typeof value === "object" && "samples" in value ? [(value as { samples: Float64Array }).samples.buffer] : [];
      parentPort?.postMessage({ ok: true, value }, transfer as ArrayBuffer[]);
    },
    (err: unknown) => parentPort?.postMessage({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
