/**
 * broker/publish-acks.ts: the embedded broker's PUBACKs for ingest and ack publishes, over a
 * PassThrough standing in for the connection. Outcomes settle out of order; PUBACKs must not.
 */
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createPublishAcks, READ_AHEAD } from "../broker/publish-acks.ts";

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The packet ids of the PUBACKs written so far (each 0x40 0x02 id-msb id-lsb). */
function pubacks(conn: PassThrough): number[] {
  const bytes = (conn.read() as Buffer | null) ?? Buffer.alloc(0);
  const ids: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    expect([bytes[i], bytes[i + 1]]).toEqual([0x40, 0x02]);
    ids.push(bytes.readUInt16BE(i + 2));
  }
  return ids;
}

function setup() {
  const conn = new PassThrough();
  const dropped: Error[] = [];
  return { conn, dropped, acks: createPublishAcks(conn, (err) => dropped.push(err)) };
}

describe("PUBACKs written by the embedded broker", () => {
  it("come only once durable, in the order the publishes came, and a withheld publish gets none", async () => {
    const { conn, acks } = setup();
    const outcomes = [deferred<boolean>(), deferred<boolean>(), deferred<boolean>()];
    const released: number[] = [];
    const answered = outcomes.map((o, i) => acks.answer(300 + i, o.promise, () => released.push(i)));
    // aedes reads on at once (within the read-ahead), before anything is durable.
    expect(released).toEqual([0, 1, 2]);
    outcomes[2].resolve(true);
    outcomes[1].resolve(false); // withheld (MAILBOX_FULL)
    // One turn of the event loop: whatever these two could write is written (and uncorked) by then.
    await new Promise(setImmediate);
    expect(pubacks(conn)).toEqual([]);
    outcomes[0].resolve(true);
    await Promise.all(answered);
    await new Promise(setImmediate);
    expect(pubacks(conn)).toEqual([300, 302]);
  });

  it("past the read-ahead, aedes is called back only once that publish is answered", async () => {
    const { acks } = setup();
    const first = deferred<boolean>();
    const calls: Array<Error | null | undefined> = [];
    const early = [acks.answer(1, first.promise, () => undefined)];
    for (let i = 1; i < READ_AHEAD; i++) early.push(acks.answer(1 + i, Promise.resolve(true), () => undefined));
    const last = acks.answer(999, Promise.resolve(true), (err) => calls.push(err));
    expect(calls).toEqual([]);
    first.resolve(true);
    await last;
    expect(calls).toEqual([null]);
  });

  it("a failed publish drops the connection once, and no later PUBACK is written", async () => {
    const { conn, dropped, acks } = setup();
    const failing = deferred<boolean>();
    const answered = [acks.answer(1, failing.promise, () => undefined), acks.answer(2, Promise.resolve(true), () => undefined)];
    failing.reject(new Error("bus unavailable"));
    await Promise.all(answered);
    await new Promise(setImmediate);
    expect(dropped.map((e) => e.message)).toEqual(["bus unavailable"]);
    expect(pubacks(conn)).toEqual([]);
  });
});
