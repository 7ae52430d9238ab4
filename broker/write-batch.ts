import type { Writable } from "node:stream";

/**
 * Coalesces the deliveries aedes writes to one connection into one socket write (one `writev`).
 *
 * aedes writes each QoS 1 delivery in a setImmediate of its own, and mqtt-packet uncorks after each
 * packet: a write system call per delivery (11% of the service's samples at MQTT saturation). Here
 * the connection is corked from a batch's first delivery until the immediates of the deliveries
 * handed to aedes so far have run (each `queued` call adds one immediate after aedes' own, which is
 * FIFO), then uncorked once. A batch is also flushed once half the connection's high-water mark is
 * buffered, so aedes' writes keep returning true (no drain wait) and nothing waits longer than it
 * would have: the bytes leave in the same turn of the event loop.
 */
export function createWriteBatch(conn: Writable) {
  let waiting = 0;

  function written(): void {
    waiting--;
    if (waiting > 0 && conn.writableLength < conn.writableHighWaterMark / 2) return;
    conn.uncork();
    if (waiting > 0) conn.cork();
  }

  return {
    /** Call right after handing a delivery to aedes (after `client.publish`). */
    queued(): void {
      if (conn.destroyed) return;
      if (waiting++ === 0) conn.cork();
      setImmediate(written);
    },
  };
}
