import type { Client, ConnectPacket } from "aedes";
import { generate } from "mqtt-packet";
import type { TokenVerifier } from "../auth/verifier.ts";
import { asRoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import { movedTo, type Placement } from "../gateway/moved.ts";
import { CONNACK, connectRefusal } from "./connect-auth.ts";

/** MQTT 5 CONNACK reason "Use another server" (contract, "Sharded delivery"). */
export const MQTT5_USE_ANOTHER_SERVER = 0x9c;

/**
 * MQTT 3.1.1 on a node that does not own the caller's shard (or while the shard has no owner):
 * CONNACK 3, server unavailable; the client asks `GET /route` or tries another node. Called once the
 * token is verified.
 */
export function refuseIfMoved(placement: Placement | undefined, identity: Urn): void {
  try {
    if (movedTo(placement, identity) !== undefined) throw connectRefusal(CONNACK.SERVER_UNAVAILABLE, "MOVED");
  } catch (err) {
    if ((err as { returnCode?: unknown }).returnCode !== undefined) throw err;
    throw connectRefusal(CONNACK.SERVER_UNAVAILABLE, asRoutingError(err).code);
  }
}

/**
 * MQTT 5 (aedes speaks 3.1.1 only and refuses a v5 CONNECT itself with 1): before aedes sees it, a
 * v5 CONNECT whose valid token belongs on another node gets a v5 CONNACK 0x9C with the Server
 * Reference property (the owner's ROUTING_PUBLIC_URL), then the connection ends. Resolves true
 * when it answered (aedes must not go on), false otherwise.
 */
export async function answerMqtt5Moved(placement: Placement | undefined, verifier: TokenVerifier, client: Client, packet: ConnectPacket): Promise<boolean> {
  if (placement?.shards === undefined || packet.protocolVersion !== 5) return false;
  let url: string | undefined;
  try {
    const principal = await verifier.verify(packet.password === undefined ? undefined : packet.password.toString("utf8"));
    url = movedTo(placement, principal.identity);
  } catch {
    return false;
  }
  if (url === undefined) return false;
  const connack = generate(
    { cmd: "connack", sessionPresent: false, reasonCode: MQTT5_USE_ANOTHER_SERVER, properties: { serverReference: url } },
    { protocolVersion: 5 },
  );
  await new Promise<void>((resolve) => client.conn.write(connack, () => resolve()));
  client.conn.end();
  return true;
}
