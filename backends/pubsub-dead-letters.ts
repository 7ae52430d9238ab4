import type { protos, Topic, v1 } from "@google-cloud/pubsub";
import { unavailable } from "../core/errors.ts";
import { decodeRecord } from "./held-deliveries.ts";
import type { DeadLetter } from "./ingress-bus.ts";

/** Record attributes on the ingress topic. */
export const ENQUEUED_AT = "enqueuedAt";
export const FAILURES = "failures";
/** Marks a dead letter this module wrote (others were forwarded by the subscription's policy). */
export const KIND = "routing";
export const DEAD_LETTER = "dead-letter";
/** Dead letters counted / listed at most. */
const PEEK_LIMIT = 1_000;

/** A dead letter as read back: ours carry the JSON DeadLetter; the policy's carry the record and a count. */
function deadLetterOf(received: protos.google.pubsub.v1.IReceivedMessage): DeadLetter | undefined {
  const m = received.message;
  if (!m?.data) return undefined;
  const data = Buffer.from(m.data);
  const attributes = m.attributes ?? {};
  const id = m.messageId ?? "";
  if (attributes[KIND] === DEAD_LETTER) {
    try {
      return { ...(JSON.parse(data.toString("utf8")) as Omit<DeadLetter, "id">), id };
    } catch {
      return undefined;
    }
  }
  const record = decodeRecord(data.toString("utf8"));
  if (record === undefined) return undefined;
  const deliveries = Number(attributes.CloudPubSubDeadLetterSourceDeliveryCount ?? 0);
  const seconds = Number(m.publishTime?.seconds ?? 0);
  return {
    id,
    record,
    attempts: Number(attributes[FAILURES] ?? 0),
    reason: `delivered ${deliveries} times without being settled (Pub/Sub dead-letter policy)`,
    deadAt: seconds * 1000 + Math.floor((m.publishTime?.nanos ?? 0) / 1e6),
  };
}

/** The dead letters of a Pub/Sub bus: the dead-letter subscription, read by synchronous pulls. */
export class PubSubDeadLetters {
  readonly #admin: v1.SubscriberClient;
  readonly #path: string;
  readonly #topic: Topic;
  /** Peeks run one at a time: a second one would not see what the first holds leased. */
  #peeking: Promise<unknown> = Promise.resolve();

  /** `path` is the dead-letter subscription's; replays are published on `topic`. */
  constructor(admin: v1.SubscriberClient, path: string, topic: Topic) {
    this.#admin = admin;
    this.#path = path;
    this.#topic = topic;
  }

  /** Resolves once no pull is under way. */
  async idle(): Promise<void> {
    await this.#peeking.catch(() => undefined);
  }

  /**
   * Every dead letter (up to PEEK_LIMIT), read by pulling the dead-letter subscription and handing
   * the messages straight back (ack deadline 0): they stay for the next reader.
   */
  peek(): Promise<DeadLetter[]> {
    return this.#pull(async () => new Set<string>());
  }

  /**
   * The named dead letters (Pub/Sub message ids) are found by pulling the dead-letter subscription;
   * each is published to the ingress topic again, and only then acked (removed): a failure between
   * the two leaves a dead letter that was also replayed, which consumers de-duplicate.
   */
  async replay(ids: readonly string[]): Promise<number> {
    const wanted = new Set(ids);
    let replayed = 0;
    try {
      await this.#pull(async (letters) => {
        const done = new Set<string>();
        for (const letter of letters) {
          if (!wanted.has(letter.id) || done.has(letter.id)) continue;
          await this.#topic.publishMessage({ data: Buffer.from(JSON.stringify(letter.record)), attributes: { [ENQUEUED_AT]: String(Date.now()) } });
          done.add(letter.id);
        }
        replayed = done.size;
        return done;
      });
    } catch (err) {
      throw unavailable("ingress bus: replay failed", err);
    }
    return replayed;
  }

  async drop(ids: readonly string[]): Promise<number> {
    const wanted = new Set(ids);
    let dropped = 0;
    try {
      await this.#pull(async (letters) => {
        const done = new Set(letters.filter((l) => wanted.has(l.id)).map((l) => l.id));
        dropped = done.size;
        return done;
      });
    } catch (err) {
      throw unavailable("ingress bus: dropping dead letters failed", err);
    }
    return dropped;
  }

  /**
   * Pulls every dead letter (up to PEEK_LIMIT), lets `settle` choose which to remove (by id), acks
   * those and hands the others straight back (ack deadline 0). One pull at a time.
   */
  #pull(settle: (letters: DeadLetter[]) => Promise<ReadonlySet<string>>): Promise<DeadLetter[]> {
    const peek = this.#peeking
      .catch(() => undefined)
      .then(async () => {
        const ackIds: string[] = [];
        const dead: DeadLetter[] = [];
        const ackIdOf = new Map<DeadLetter, string>();
        try {
          while (ackIds.length < PEEK_LIMIT) {
            const [response] = await this.#admin.pull(
              { subscription: this.#path, maxMessages: PEEK_LIMIT - ackIds.length, returnImmediately: true },
              { timeout: 10_000 },
            );
            const received = response.receivedMessages ?? [];
            if (received.length === 0) break;
            for (const r of received) {
              if (r.ackId) ackIds.push(r.ackId);
              const letter = deadLetterOf(r);
              if (letter === undefined) continue;
              dead.push(letter);
              if (r.ackId) ackIdOf.set(letter, r.ackId);
            }
          }
          const remove = await settle(dead);
          const removing = dead
            .filter((l) => remove.has(l.id))
            .map((l) => ackIdOf.get(l))
            .filter((a): a is string => a !== undefined);
          if (removing.length > 0) {
            await this.#admin.acknowledge({ subscription: this.#path, ackIds: removing });
            const gone = new Set(removing);
            ackIds.splice(0, ackIds.length, ...ackIds.filter((a) => !gone.has(a)));
            return dead.filter((l) => !remove.has(l.id));
          }
        } finally {
          if (ackIds.length > 0) {
            await this.#admin.modifyAckDeadline({ subscription: this.#path, ackIds, ackDeadlineSeconds: 0 }).catch(() => undefined);
          }
        }
        return dead;
      });
    this.#peeking = peek;
    return peek;
  }
}
