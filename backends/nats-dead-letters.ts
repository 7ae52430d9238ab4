import { headers, type JetStreamClient, type JetStreamManager } from "nats";
import { unavailable } from "../core/errors.ts";
import type { DeadLetter } from "./ingress-bus.ts";
import { decodeRecord } from "./held-deliveries.ts";
import { ENQUEUED_AT, FAILURES } from "./nats-headers.ts";
import { deadStreamOf, isMissingMessage, isNotFound } from "./nats-streams.ts";

/** A dead letter as the dead-letter stream keeps it; its id is its sequence there. */
export type StoredDeadLetter = Omit<DeadLetter, "id">;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The dead letters of a NATS bus: the `<stream>_DEAD` stream, read and edited by sequence. */
export class NatsDeadLetters {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #stream: string;
  readonly #ingress: string;
  readonly #deadSubject: string;

  constructor(js: JetStreamClient, jsm: JetStreamManager, stream: string, subjectPrefix: string) {
    this.#js = js;
    this.#jsm = jsm;
    this.#stream = stream;
    this.#ingress = `${subjectPrefix}.ingress`;
    this.#deadSubject = `${subjectPrefix}.dead`;
  }

  async count(): Promise<number> {
    const dead = await this.#jsm.streams.info(deadStreamOf(this.#stream));
    return dead.state.messages;
  }

  async list(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    try {
      const stream = deadStreamOf(this.#stream);
      const { state } = await this.#jsm.streams.info(stream);
      const dead: DeadLetter[] = [];
      // Newest first; sequences may have gaps (deleted or aged-out messages).
      for (let seq = state.last_seq; seq >= state.first_seq && seq > 0 && dead.length < limit; seq--) {
        const stored = await this.#jsm.streams.getMessage(stream, { seq }).catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
        if (stored === undefined) continue;
        dead.push({ ...(JSON.parse(decoder.decode(stored.data)) as StoredDeadLetter), id: String(seq) });
      }
      return dead;
    } catch (err) {
      throw unavailable("ingress bus: dead letters unavailable", err);
    }
  }

  /**
   * Each named dead letter (its sequence in `<stream>_DEAD`) is published to the ingress subject
   * again (de-duplicated by `Nats-Msg-Id` `replay-<seq>`, so a crash between the steps cannot
   * fork it), then deleted from the dead-letter stream.
   */
  async replay(ids: readonly string[]): Promise<number> {
    try {
      let replayed = 0;
      for (const seq of deadSeqs(ids)) {
        const dead = await this.#at(seq);
        if (dead === undefined) continue;
        const h = headers();
        h.set(ENQUEUED_AT, String(Date.now()));
        await this.#js.publish(this.#ingress, encoder.encode(JSON.stringify(dead.record)), { headers: h, msgID: `replay-${this.#stream}-${seq}` });
        await this.#jsm.streams.deleteMessage(deadStreamOf(this.#stream), seq, false).catch((err: unknown) => {
          if (!isMissingMessage(err)) throw err;
        });
        replayed++;
      }
      return replayed;
    } catch (err) {
      throw unavailable("ingress bus: replay failed", err);
    }
  }

  async drop(ids: readonly string[]): Promise<number> {
    try {
      let dropped = 0;
      for (const seq of deadSeqs(ids)) {
        if ((await this.#at(seq)) === undefined) continue;
        const gone = await this.#jsm.streams.deleteMessage(deadStreamOf(this.#stream), seq, false).catch((err: unknown) => {
          if (isMissingMessage(err)) return false;
          throw err;
        });
        if (gone) dropped++;
      }
      return dropped;
    } catch (err) {
      throw unavailable("ingress bus: dropping dead letters failed", err);
    }
  }

  /**
   * The server's MAX_DELIVERIES advisory: the record at `streamSeq` of the ingress stream was
   * delivered `deliveries` times (the consumer's max_deliver) without being settled, and the server
   * will not deliver it again. It is read by sequence, recorded as a dead letter (de-duplicated by
   * `Nats-Msg-Id` `dead-<seq>`, so two instances or a nack racing it write one) and only then
   * deleted from the ingress stream. Gone already (acked meanwhile): nothing to do.
   */
  async unsettled(streamSeq: number, deliveries: number): Promise<void> {
    const stored = await this.#jsm.streams.getMessage(this.#stream, { seq: streamSeq }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (stored === undefined) return;
    const record = decodeRecord(decoder.decode(stored.data));
    if (record !== undefined) {
      const failures = Number(stored.header?.get(FAILURES) ?? 0);
      const dead: StoredDeadLetter = {
        record,
        attempts: Number.isFinite(failures) ? failures : 0,
        reason: `delivered ${deliveries} times without being settled (JetStream max_deliver)`,
        deadAt: Date.now(),
      };
      await this.#js.publish(this.#deadSubject, encoder.encode(JSON.stringify(dead)), { msgID: `dead-${streamSeq}` });
    }
    await this.#jsm.streams.deleteMessage(this.#stream, streamSeq, false).catch((err: unknown) => {
      if (!isMissingMessage(err)) throw err;
    });
  }

  async #at(seq: number): Promise<StoredDeadLetter | undefined> {
    const stored = await this.#jsm.streams.getMessage(deadStreamOf(this.#stream), { seq }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    return stored === undefined ? undefined : (JSON.parse(decoder.decode(stored.data)) as StoredDeadLetter);
  }
}

function deadSeqs(ids: readonly string[]): number[] {
  return [...new Set(ids)].map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
}
