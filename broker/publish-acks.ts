import type { Writable } from "node:stream";

/**
 * QoS 1 publishes a connection may have waiting for their PUBACK while aedes goes on reading it.
 * Past this, aedes reads that connection's next packets only once the oldest waiting one settles:
 * a sender held by its rate or the ingress bound (issue 14) is throttled after this many.
 */
export const READ_AHEAD = 32;

/** PUBACK for packet id `id` (MQTT 3.1.1, 3.4): fixed header 0x40, remaining length 2, the id. */
function puback(id: number): Buffer {
  return Buffer.from([0x40, 0x02, id >> 8, id & 0xff]);
}

/**
 * The PUBACKs of one connection's QoS 1 publishes to the ingest and ack topics, written here, not
 * by aedes: aedes sends a PUBACK when its authorizePublish hook calls back, and reads nothing more
 * from the connection until every packet of the chunk it read has called back. Waiting there for
 * durability let each connection have one chunk in the bus at a time: the next publishes waited
 * in the socket for the previous group commit (aedes is given the packet at QoS 0 instead).
 *
 * Each PUBACK is still written only once its publish is durable (the contract), and in the order
 * the PUBLISHes came (MQTT 3.1.1, 4.6), after every earlier one; PUBACKs written in one turn of
 * the event loop leave in one write. A withheld publish (MAILBOX_FULL) gets none; a publish that
 * failed (retryable) drops the connection, as aedes did, and no later PUBACK is written.
 */
export function createPublishAcks(conn: Writable, drop: (err: Error) => void) {
  let tail: Promise<void> = Promise.resolve();
  let waiting = 0;
  let failed = false;
  let corked = false;

  function write(id: number): void {
    if (failed || conn.destroyed) return;
    if (!corked) {
      corked = true;
      conn.cork();
      process.nextTick(() => {
        corked = false;
        conn.uncork();
      });
    }
    conn.write(puback(id));
  }

  return {
    /**
     * Answers the publish with packet id `id` once `acknowledge` resolves (true: PUBACK, false:
     * none) and every earlier publish was answered. `done` is aedes' callback: called at once
     * while fewer than READ_AHEAD wait, else once this publish is answered (or with the error).
     */
    answer(id: number, acknowledge: Promise<boolean>, done: (err?: Error | null) => void): Promise<void> {
      const early = ++waiting <= READ_AHEAD;
      if (early) done(null);
      const previous = tail;
      const settled = acknowledge.then(
        async (ack) => {
          await previous;
          if (ack) write(id);
          if (!early) done(null);
        },
        async (err: unknown) => {
          const error = err instanceof Error ? err : new Error("publish not accepted");
          await previous;
          if (!early) done(error);
          else if (!failed) drop(error);
          failed = true;
        },
      );
      tail = settled.finally(() => {
        waiting--;
      });
      return tail;
    },
  };
}

export type PublishAcks = ReturnType<typeof createPublishAcks>;
