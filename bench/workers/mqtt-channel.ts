/**
 * MQTT publisher -> subscriber, QoS 1 both ways. Through the service: publish the envelope to
 * `envelopes/send` (JWT as password), receive frames on `clients/<urn>/receive`. Mosquitto alone:
 * publish straight to the subscriber's topic (the ceiling: a broker relaying, nothing else).
 */
import mqtt, { type MqttClient } from "mqtt";
import { messageIdIn, openAll, payloadOf, type Channel, type ChannelOptions } from "./channel.ts";
import type { Party, TargetSpec } from "./messages.ts";

type MqttTarget = Extract<TargetSpec, { protocol: "mqtt" }>;

function receiveTopic(target: MqttTarget, urn: string): string {
  return target.topics === "service" ? `clients/${urn}/receive` : `${target.topicPrefix}/${urn}/receive`;
}

function connectClient(target: MqttTarget, party: Party): Promise<MqttClient> {
  return mqtt.connectAsync(target.url, {
    clientId: `${target.topicPrefix}-${party.urn.replace(/[^A-Za-z0-9]/g, "")}-${Math.random().toString(36).slice(2, 8)}`,
    // The service picks the delivery mode from the user name (README: MQTT); Mosquitto ignores it.
    username: "push",
    password: party.token || undefined,
    reconnectPeriod: 0,
    clean: true,
  });
}

/** Through the service, stored messages wait for an ack: batched like a real client would. */
const ACK_BATCH = 200;
const ACK_FLUSH_MS = 20;

export async function openMqttChannel(o: ChannelOptions): Promise<Channel> {
  const target = o.target as MqttTarget;
  const payload = payloadOf(o.variant.payloadBytes);
  const acks = target.topics === "service";
  const pending: string[][] = o.pairs.map(() => []);
  const flushAcks = (p: number) => {
    if (pending[p].length === 0) return;
    receivers[p].publish(`clients/${o.pairs[p].receiver.urn}/ack`, JSON.stringify({ messageIds: pending[p] }), { qos: 1 });
    pending[p] = [];
  };
  const receivers = await openAll(o.pairs.length, 16, async (p) => {
    const client = await connectClient(target, o.pairs[p].receiver);
    client.on("message", (_topic, data) => {
      const id = messageIdIn(data);
      if (id === undefined) return;
      o.sink().delivered(p, id);
      if (!acks) return;
      pending[p].push(id);
      if (pending[p].length >= ACK_BATCH) flushAcks(p);
    });
    await client.subscribeAsync(receiveTopic(target, o.pairs[p].receiver.urn), { qos: 1 });
    return client;
  });
  const ackTimer = setInterval(() => pending.forEach((_, p) => flushAcks(p)), ACK_FLUSH_MS);
  const senders = await openAll(o.pairs.length, 16, (p) => connectClient(target, o.pairs[p].sender));
  const topics = o.pairs.map((pair) => (target.topics === "service" ? "envelopes/send" : receiveTopic(target, pair.receiver.urn)));
  const heads = o.pairs.map((pair) => `{"recipientId":"${pair.receiver.urn}","messageId":"`);
  const tail = `","encryptedData":"${payload}"}`;
  return {
    reopened: 0,
    send(p, id) {
      senders[p].publish(topics[p], heads[p] + id + tail, { qos: 1 }, (err) => {
        if (err) o.sink().refused(p);
      });
    },
    flush: () => pending.forEach((_, p) => flushAcks(p)),
    async close() {
      clearInterval(ackTimer);
      await Promise.all([...senders, ...receivers].map((c) => c.endAsync(true)));
    },
  };
}
