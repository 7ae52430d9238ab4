import type { BusRecord, Delivery } from "./ingress-bus.ts";

/** A record the delivery engine holds, from enqueue to ack or dead-lettering. */
export interface Slot {
  readonly seq: number;
  readonly record: BusRecord;
  readonly enqueuedAt: number;
  attempts: number;
  state: "ready" | "inflight" | "waiting" | "gone";
  /** Id of the current delivery: a delivery returned to the bus can no longer nack. */
  delivery: number;
  consumer: Consumer | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The pending or committed removal, so a repeated ack waits for the same commit. */
  removal: Promise<void> | undefined;
}

export interface Consumer {
  readonly handler: (delivery: Delivery) => void;
  paused: boolean;
}

export interface SlotOps {
  ack(slot: Slot): Promise<void>;
  nack(slot: Slot, id: number, reason: string): Promise<void>;
}

/**
 * One delivery of a slot. A class, so handing out a delivery allocates one object rather than an
 * object and two closures per message (the bus is on every message's path).
 */
export class SlotDelivery implements Delivery {
  readonly record: BusRecord;
  readonly attempt: number;
  readonly #ops: SlotOps;
  readonly #slot: Slot;
  readonly #id: number;

  constructor(ops: SlotOps, slot: Slot, id: number) {
    this.record = slot.record;
    this.attempt = slot.attempts + 1;
    this.#ops = ops;
    this.#slot = slot;
    this.#id = id;
  }

  ack(): Promise<void> {
    return this.#ops.ack(this.#slot);
  }

  nack(reason: string): Promise<void> {
    return this.#ops.nack(this.#slot, this.#id, reason);
  }
}
