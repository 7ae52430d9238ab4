import { isUrn, type Urn } from "../core/urn.ts";

/**
 * The MQTT topic layout (contract defaults: `envelopes/send`, `clients/{urn}/receive`,
 * `clients/{urn}/ack`). `{urn}` stands for one whole topic level; the config schema checks that.
 */
export interface MqttTopicSettings {
  readonly ingest: string;
  readonly receive: string;
  readonly ack: string;
}

export interface MqttTopics {
  readonly ingest: string;
  receive(urn: Urn): string;
  ack(urn: Urn): string;
  /** The identity whose ack topic this is, if it is one (any identity). */
  ackOwner(topic: string): Urn | undefined;
  /**
   * External broker: the ingest topic carries the sender as one more level, `<ingest>/<urn>`,
   * because the bridge cannot see who published; the broker's ACL binds that level to the user.
   */
  externalIngest(urn: Urn): string;
  externalIngestOwner(topic: string): Urn | undefined;
  /** `$share/<group>/<filter>` filters the bridges consume an external broker with. */
  sharedIngestFilter(group: string): string;
  sharedAckFilter(group: string): string;
}

const URN_LEVEL = "{urn}";

/**
 * A URN usable as one MQTT topic level: no `/` (a level separator), no `+`/`#` (wildcards), no NUL.
 * Other URNs cannot use MQTT (the CONNECT is refused as not authorized).
 */
export function isTopicSafe(urn: string): boolean {
  // eslint-disable-next-line no-control-regex -- NUL is exactly what MQTT forbids in a topic
  return !/[/+#\u0000]/.test(urn);
}

function split(template: string): { prefix: string; suffix: string } {
  const at = template.indexOf(URN_LEVEL);
  if (at < 0 || template.indexOf(URN_LEVEL, at + 1) >= 0) throw new Error(`MQTT topic template ${template} must hold {urn} exactly once`);
  return { prefix: template.slice(0, at), suffix: template.slice(at + URN_LEVEL.length) };
}

function ownerOf(topic: string, prefix: string, suffix: string): Urn | undefined {
  if (topic.length <= prefix.length + suffix.length || !topic.startsWith(prefix) || !topic.endsWith(suffix)) return undefined;
  const urn = topic.slice(prefix.length, topic.length - suffix.length);
  return isUrn(urn) && isTopicSafe(urn) ? urn : undefined;
}

/** Builds the layout; throws when two topics could collide (start-up error). */
export function mqttTopics(settings: MqttTopicSettings): MqttTopics {
  const receive = split(settings.receive);
  const ack = split(settings.ack);
  if (settings.receive === settings.ack) throw new Error("the MQTT receive and ack topics must differ");
  const externalPrefix = `${settings.ingest}/`;
  return {
    ingest: settings.ingest,
    receive: (urn) => `${receive.prefix}${urn}${receive.suffix}`,
    ack: (urn) => `${ack.prefix}${urn}${ack.suffix}`,
    ackOwner: (topic) => ownerOf(topic, ack.prefix, ack.suffix),
    externalIngest: (urn) => `${externalPrefix}${urn}`,
    externalIngestOwner: (topic) => ownerOf(topic, externalPrefix, ""),
    sharedIngestFilter: (group) => `$share/${group}/${externalPrefix}+`,
    sharedAckFilter: (group) => `$share/${group}/${ack.prefix}+${ack.suffix}`,
  };
}
