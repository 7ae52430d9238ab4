/**
 * One measured run over an open channel. Two loads:
 * - saturate: closed loop, `window` messages per pair in flight end to end (sent, not yet
 *   delivered); throughput is what arrives inside the window;
 * - rate: open loop, messages scheduled at a fixed rate whatever the contender does; latency is
 *   measured from the scheduled send time (no coordinated omission: a stall shows up in the tail).
 * Ids are `<run>.<seq>.<scheduled µs>`: unique per recipient for the service's de-duplication,
 * and the latency needs no lookup.
 */
import type { Channel, Sink } from "./channel.ts";
import type { Load, RunResult } from "./messages.ts";

const TICK_MS = 1;
/** Open loop: at most this many seconds' worth of messages in flight (see `tick`). */
const MAX_QUEUE_SECONDS = 0.5;

class Samples {
  #buf = new Float64Array(1 << 14);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#buf.length) {
      const bigger = new Float64Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    this.#buf[this.#n++] = v;
  }
  take(): Float64Array {
    return this.#buf.slice(0, this.#n);
  }
}

export interface RunSpec {
  readonly load: Load;
  readonly durationMs: number;
  readonly rampMs: number;
  readonly drainMs: number;
}

let runs = 0;

export function runLoad(channel: Channel, pairs: number, setSink: (sink: Sink) => void, spec: RunSpec): Promise<RunResult> {
  const tag = `${process.pid.toString(36)}${(++runs).toString(36)}${Date.now().toString(36)}.`;
  const seen = new Set<string>();
  const samples = new Samples();
  const outstanding = new Int32Array(pairs);
  let sent = 0;
  let received = 0;
  let receivedInWindow = 0;
  let errors = 0;
  let sending = true;
  const t0 = performance.now();
  const windowStart = t0 + spec.rampMs;
  const windowEnd = t0 + spec.durationMs;
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => (settle = resolve));
  const checkSettled = () => {
    if (!sending && received + errors >= sent) settle();
  };

  const sendOne = (pair: number, scheduled: number) => {
    const id = `${tag}${sent}.${Math.round(scheduled * 1000)}`;
    sent++;
    outstanding[pair]++;
    channel.send(pair, id);
  };

  const saturating = spec.load.kind === "saturate";
  setSink({
    delivered(pair, id) {
      if (seen.has(id)) return;
      seen.add(id);
      const now = performance.now();
      received++;
      outstanding[pair]--;
      const scheduled = Number(id.slice(id.lastIndexOf(".") + 1)) / 1000;
      if (scheduled >= windowStart && scheduled <= windowEnd) samples.push(now - scheduled);
      if (now >= windowStart && now <= windowEnd) receivedInWindow++;
      if (saturating && sending) sendOne(pair, now);
      else checkSettled();
    },
    refused(pair) {
      errors++;
      outstanding[pair]--;
      if (saturating && sending) sendOne(pair, performance.now());
      else checkSettled();
    },
  });

  const stop = () => {
    sending = false;
    channel.flush();
    checkSettled();
  };

  if (spec.load.kind === "saturate") {
    for (let w = 0; w < spec.load.window; w++) for (let p = 0; p < pairs; p++) sendOne(p, performance.now());
    setTimeout(stop, spec.durationMs);
  } else {
    const perMs = spec.load.perSecond / 1000;
    // An overloaded contender must not build an unbounded backlog that later rounds (and other
    // contenders) would pay for: past MAX_QUEUE_SECONDS of the rate in flight, sending waits. The
    // waiting messages keep their scheduled times, so the wait shows in their latency.
    const maxOutstanding = Math.max(500, Math.ceil(spec.load.perSecond * MAX_QUEUE_SECONDS));
    const tick = () => {
      const now = performance.now();
      const end = Math.min(now, windowEnd);
      const due = Math.floor((end - t0) * perMs);
      while (sent < due && sent - received - errors < maxOutstanding) sendOne(sent % pairs, t0 + sent / perMs);
      if (now >= windowEnd) stop();
      else setTimeout(tick, TICK_MS);
    };
    tick();
  }

  const drained = new Promise<void>((resolve) => setTimeout(resolve, spec.durationMs + spec.drainMs));
  return Promise.race([settled, drained]).then(() => {
    setSink({ delivered() {}, refused() {} });
    return {
      sent,
      received,
      receivedInWindow,
      windowMs: spec.durationMs - spec.rampMs,
      errors,
      lost: Math.max(0, sent - received - errors),
      samples: samples.take(),
    };
  });
}
