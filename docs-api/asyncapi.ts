import type { TSchema } from "@sinclair/typebox";
import { QueuedMessageSchema, SecureEnvelopeSchema } from "../core/envelope.ts";
import { AckBodySchema, AckFrameSchema, AuthFrameSchema, FetchFrameSchema, SendFrameSchema } from "../core/frames.ts";
import { AuthedFrameSchema, ErrorFrameSchema, MessageFrameSchema, MessagesFrameSchema, PokeFrameSchema, SentFrameSchema } from "../core/server-frames.ts";
import { serviceVersion } from "./version.ts";

/*
 * The AsyncAPI 3.0 document of the WebSocket frames (`GET /connect`) and the MQTT topics, from the
 * same typebox objects the frame validators compile (client frames) or that describe the frame
 * builders' output (server frames, held to them by a test). Operations are the service's view:
 * `receive` = a client sends it, `send` = the service sends it.
 */

/** The contract's default MQTT topics (the MQTT broker may make them configurable). */
export const MQTT_TOPICS = {
  send: "envelopes/send",
  receive: "clients/{urn}/receive",
  ack: "clients/{urn}/ack",
} as const;

export const ASYNCAPI_SCHEMAS: Readonly<Record<string, TSchema>> = {
  SecureEnvelope: SecureEnvelopeSchema,
  QueuedMessage: QueuedMessageSchema,
  SendFrame: SendFrameSchema,
  FetchFrame: FetchFrameSchema,
  AckFrame: AckFrameSchema,
  AuthFrame: AuthFrameSchema,
  AckBody: AckBodySchema,
  PokeFrame: PokeFrameSchema,
  MessageFrame: MessageFrameSchema,
  SentFrame: SentFrameSchema,
  MessagesFrame: MessagesFrameSchema,
  ErrorFrame: ErrorFrameSchema,
  AuthedFrame: AuthedFrameSchema,
};

const CLIENT_FRAMES = ["SendFrame", "FetchFrame", "AckFrame"] as const;
const SERVER_FRAMES = ["PokeFrame", "MessageFrame", "SentFrame", "MessagesFrame", "ErrorFrame"] as const;
/** The token refresh exists on WebSocket only (an MQTT session keeps the token of its CONNECT). */
const WS_CLIENT_FRAMES = [...CLIENT_FRAMES, "AuthFrame"] as const;
const WS_SERVER_FRAMES = [...SERVER_FRAMES, "AuthedFrame"] as const;

function message(name: string, summary: string) {
  return { name, title: name, summary, contentType: "application/json", payload: { $ref: `#/components/schemas/${name}` } };
}

const MESSAGES = {
  SendFrame: message("SendFrame", "Send an envelope; answered by `sent` or `error` with the same ref."),
  FetchFrame: message("FetchFrame", "Fetch unacked messages; answered by `messages` with the same ref."),
  AckFrame: message("AckFrame", "Acknowledge messages; answered only by an `error` if it fails."),
  PokeFrame: message("PokeFrame", "The mailbox has something new: fetch it (poke mode)."),
  MessageFrame: message("MessageFrame", "The message itself (push mode, and every ephemeral message)."),
  SentFrame: message("SentFrame", "The send with this ref is durably accepted."),
  MessagesFrame: message("MessagesFrame", "The answer to a fetch."),
  ErrorFrame: message("ErrorFrame", "A frame failed; the contract's error code."),
  AuthFrame: message(
    "AuthFrame",
    "Replace the session's token before it expires (same identity); answered by `authed`, or by `error` and the old token stays (the session closes with 4002 when it expires).",
  ),
  AuthedFrame: message("AuthedFrame", "The token of the auth frame with this ref is now the session's; `exp` is its expiry (unix seconds)."),
  SecureEnvelope: message("SecureEnvelope", "An envelope published to envelopes/send (QoS 1: PUBACK once durably accepted)."),
  AckBody: message("AckBody", "Acknowledge messages over MQTT."),
} as const;

type MessageName = keyof typeof MESSAGES;

function channelMessages(names: readonly MessageName[]): Record<string, { $ref: string }> {
  return Object.fromEntries(names.map((n) => [n, { $ref: `#/components/messages/${n}` }]));
}

function operationMessages(channel: string, names: readonly MessageName[]): Array<{ $ref: string }> {
  return names.map((n) => ({ $ref: `#/channels/${channel}/messages/${n}` }));
}

const URN_PARAMETER = { urn: { description: "The subscriber's own URN (urn:<namespace>:<type>:<id>); other identities' topics are refused." } };

/** The ports a node bound; the document names them (the defaults when not given). */
export interface AsyncApiPorts {
  readonly http?: number;
  /** The embedded broker's TCP port; undefined with an external broker or when not known. */
  readonly mqtt?: number;
}

/** The document as an object (schemas are the typebox objects themselves); serve `JSON.stringify` of it. */
export function buildAsyncApi(ports: AsyncApiPorts = {}) {
  return {
    asyncapi: "3.0.0",
    info: {
      title: "Routing Service",
      version: serviceVersion(),
      description:
        "WebSocket frames and MQTT topics of the router for end-to-end-encrypted SecureEnvelopes. The same JSON frames travel on both. Payload fields are opaque base64.",
    },
    defaultContentType: "application/json",
    servers: {
      websocket: {
        host: `localhost:${ports.http ?? 8080}`,
        protocol: "ws",
        pathname: "/connect",
        description: "ROUTING_HTTP_PORT. Query `delivery=poke` (default) or `delivery=push`.",
        security: [{ $ref: "#/components/securitySchemes/bearer" }],
      },
      mqtt: {
        host: `localhost:${ports.mqtt ?? 1883}`,
        protocol: "mqtt",
        description: "ROUTING_MQTT_PORT (embedded broker).",
        security: [{ $ref: "#/components/securitySchemes/mqttJwt" }],
      },
    },
    channels: {
      connect: {
        address: "/connect",
        title: "WebSocket session",
        servers: [{ $ref: "#/servers/websocket" }],
        messages: channelMessages([...WS_CLIENT_FRAMES, ...WS_SERVER_FRAMES]),
      },
      envelopesSend: {
        address: MQTT_TOPICS.send,
        servers: [{ $ref: "#/servers/mqtt" }],
        messages: channelMessages(["SecureEnvelope"]),
      },
      clientReceive: {
        address: MQTT_TOPICS.receive,
        servers: [{ $ref: "#/servers/mqtt" }],
        parameters: URN_PARAMETER,
        messages: channelMessages(SERVER_FRAMES),
      },
      clientAck: {
        address: MQTT_TOPICS.ack,
        servers: [{ $ref: "#/servers/mqtt" }],
        parameters: URN_PARAMETER,
        messages: channelMessages(["AckBody"]),
      },
    },
    operations: {
      receiveClientFrames: {
        action: "receive",
        channel: { $ref: "#/channels/connect" },
        summary: "Frames a client sends on its socket.",
        messages: operationMessages("connect", WS_CLIENT_FRAMES),
      },
      sendServerFrames: {
        action: "send",
        channel: { $ref: "#/channels/connect" },
        summary: "Frames the service sends on a socket.",
        messages: operationMessages("connect", WS_SERVER_FRAMES),
      },
      receiveEnvelopes: {
        action: "receive",
        channel: { $ref: "#/channels/envelopesSend" },
        summary: "Envelopes published over MQTT.",
        messages: operationMessages("envelopesSend", ["SecureEnvelope"]),
      },
      sendToSubscriber: {
        action: "send",
        channel: { $ref: "#/channels/clientReceive" },
        summary: "The same frames as on WebSocket, to the subscriber's own topic.",
        messages: operationMessages("clientReceive", SERVER_FRAMES),
      },
      receiveAcks: {
        action: "receive",
        channel: { $ref: "#/channels/clientAck" },
        summary: "Acks published over MQTT.",
        messages: operationMessages("clientAck", ["AckBody"]),
      },
    },
    components: {
      schemas: ASYNCAPI_SCHEMAS,
      messages: MESSAGES,
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "Authorization header, or the token as the Sec-WebSocket-Protocol value (browsers).",
        },
        mqttJwt: { type: "userPassword", description: "CONNECT with the JWT as the password (username free)." },
      },
    },
  };
}

export type AsyncApiDocument = ReturnType<typeof buildAsyncApi>;
