import SwaggerParser from "@apidevtools/swagger-parser";
import { Parser } from "@asyncapi/parser";
import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorBodySchema } from "../core/error-body.ts";
import { QueuedMessageSchema, SecureEnvelopeSchema, stampEnvelope } from "../core/envelope.ts";
import { ERRORS, RoutingError, type ErrorCode } from "../core/errors.ts";
import {
  AckBodySchema,
  AckFrameSchema,
  AuthFrameSchema,
  authedFrame,
  errorFrame,
  FetchFrameSchema,
  messageFrame,
  messagesFrame,
  POKE_FRAME,
  queuedMessageJson,
  SendFrameSchema,
  sentFrame,
} from "../core/frames.ts";
import { AuthedFrameSchema, ErrorFrameSchema, MessageFrameSchema, MessagesFrameSchema, PokeFrameSchema, SentFrameSchema } from "../core/server-frames.ts";
import type { Urn } from "../core/urn.ts";
import { buildAsyncApi } from "../docs-api/asyncapi.ts";
import { buildOpenApi } from "../docs-api/openapi.ts";
import { HTTP_ROUTES, RegisterDeviceSchema, UnregisterDeviceSchema } from "../gateway/http-routes.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

describe("API documents", () => {
  let n: InProcessNode;
  let openapiText: string;
  let asyncapiText: string;

  beforeAll(async () => {
    n = await startInProcess({ ROUTING_GATEWAY_ENGINE: "ws" });
    const [o, a] = await Promise.all([fetch(`${n.url}/openapi.json`), fetch(`${n.url}/asyncapi.json`)]);
    expect([o.status, a.status]).toEqual([200, 200]);
    expect(o.headers.get("content-type")).toBe("application/json");
    openapiText = await o.text();
    asyncapiText = await a.text();
  });
  afterAll(async () => {
    await n?.stop();
  });

  it("the served documents are the generated ones", () => {
    expect(JSON.parse(openapiText)).toEqual(json(buildOpenApi()));
    expect(JSON.parse(asyncapiText)).toEqual(json(buildAsyncApi({ http: n.port, mqtt: n.node.mqttPort })));
  });

  it("OpenAPI 3.1 validates with swagger-parser", async () => {
    const doc = JSON.parse(openapiText) as { openapi: string };
    expect(doc.openapi).toBe("3.1.0");
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
  });

  it("AsyncAPI 3.0 parses with @asyncapi/parser without errors or warnings", async () => {
    const { document, diagnostics } = await new Parser().parse(asyncapiText);
    // Severity 0 = error, 1 = warning; 2 and 3 are hints (e.g. "3.1.0 exists").
    expect(diagnostics.filter((d) => d.severity <= 1).map((d) => `${d.code}: ${d.message} at ${d.path.join("/")}`)).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.version()).toBe("3.0.0");
    const addresses = document!
      .channels()
      .all()
      .map((c) => c.address());
    expect(addresses.sort()).toEqual(["/connect", "clients/{urn}/ack", "clients/{urn}/receive", "envelopes/send"]);
    const wsMessages = document!
      .channels()
      .get("connect")!
      .messages()
      .all()
      .map((m) => m.name());
    expect(wsMessages.sort()).toEqual([
      "AckFrame",
      "AuthFrame",
      "AuthedFrame",
      "ErrorFrame",
      "FetchFrame",
      "MessageFrame",
      "MessagesFrame",
      "PokeFrame",
      "SendFrame",
      "SentFrame",
    ]);
    // MQTT has no auth frame: its topics carry the other frames only.
    const mqttMessages = document!
      .channels()
      .get("clientReceive")!
      .messages()
      .all()
      .map((m) => m.name());
    expect(mqttMessages).not.toContain("AuthedFrame");
  });

  it("OpenAPI paths and methods are exactly the route table, and the live handler serves exactly those", async () => {
    const doc = JSON.parse(openapiText) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const table = Object.entries(HTTP_ROUTES).flatMap(([path, methods]) => methods.map((m) => `${m} ${path}`));
    expect(documented.sort()).toEqual(table.sort());

    for (const route of documented) {
      const [method, path] = route.split(" ");
      const res = await fetch(n.url + path, { method });
      await res.arrayBuffer();
      expect([404, 405], route).not.toContain(res.status);
      expect(res.headers.get("x-request-id"), route).toBeTruthy();
    }
    for (const path of Object.keys(doc.paths)) {
      const undocumented = ["GET", "POST", "PUT", "DELETE", "PATCH"].filter((m) => !(m.toLowerCase() in doc.paths[path]));
      for (const method of undocumented) {
        const res = await fetch(n.url + path, { method });
        await res.arrayBuffer();
        expect(res.status, `${method} ${path}`).toBe(405);
      }
    }
    const unknown = await fetch(`${n.url}/not-a-route`);
    expect(unknown.status).toBe(404);
  });

  it("embeds the very typebox objects the validators compile", () => {
    const openapi = buildOpenApi();
    const s = openapi.components.schemas;
    expect(s.SecureEnvelope).toBe(SecureEnvelopeSchema);
    expect(s.QueuedMessage).toBe(QueuedMessageSchema);
    expect(s.AckBody).toBe(AckBodySchema);
    expect(s.RegisterDevice).toBe(RegisterDeviceSchema);
    expect(s.UnregisterDevice).toBe(UnregisterDeviceSchema);
    expect(s.ErrorBody).toBe(ErrorBodySchema);
    const bodyRef = (path: string, method: string) => (openapi.paths[path][method].requestBody?.content["application/json"].schema as { $ref: string }).$ref;
    expect(bodyRef("/send", "post")).toBe("#/components/schemas/SecureEnvelope");
    expect(bodyRef("/messages/ack", "post")).toBe("#/components/schemas/AckBody");
    expect(bodyRef("/register-device", "post")).toBe("#/components/schemas/RegisterDevice");
    expect(bodyRef("/register-device", "delete")).toBe("#/components/schemas/UnregisterDevice");
    const served = JSON.parse(openapiText) as { components: { schemas: Record<string, unknown> } };
    expect(served.components.schemas.SecureEnvelope).toEqual(json(SecureEnvelopeSchema));

    const asyncapi = buildAsyncApi();
    const a = asyncapi.components.schemas;
    expect(a.SecureEnvelope).toBe(SecureEnvelopeSchema);
    expect(a.SendFrame).toBe(SendFrameSchema);
    expect(a.FetchFrame).toBe(FetchFrameSchema);
    expect(a.AckFrame).toBe(AckFrameSchema);
    expect(a.AckBody).toBe(AckBodySchema);
    expect(a.AuthFrame).toBe(AuthFrameSchema);
  });

  it("the error body and server frame schemas describe what the code actually produces", () => {
    // typebox checks formats only once told what they mean (the document readers know date-time).
    if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v));
    for (const code of Object.keys(ERRORS) as ErrorCode[]) {
      expect(Value.Check(ErrorBodySchema, new RoutingError(code, "a sentence").toBody()), code).toBe(true);
      expect(Value.Check(ErrorFrameSchema, JSON.parse(errorFrame("r1", code, "a sentence"))), code).toBe(true);
    }
    expect(Value.Check(ErrorFrameSchema, JSON.parse(errorFrame(undefined, "INVALID_JSON", "x")))).toBe(true);
    const envelope = stampEnvelope({ recipientId: "urn:sm:user:bob", encryptedData: "aGVsbG8=", isEphemeral: true }, "urn:sm:user:alice" as Urn, () => "id-1");
    const queued = queuedMessageJson("id-1", JSON.stringify(envelope), Date.now());
    expect(Value.Check(QueuedMessageSchema, JSON.parse(queued))).toBe(true);
    expect(Value.Check(PokeFrameSchema, JSON.parse(POKE_FRAME))).toBe(true);
    expect(Value.Check(MessageFrameSchema, JSON.parse(messageFrame(queued)))).toBe(true);
    expect(Value.Check(SentFrameSchema, JSON.parse(sentFrame("c1", "id-1")))).toBe(true);
    expect(Value.Check(MessagesFrameSchema, JSON.parse(messagesFrame("f1", [queued, queued])))).toBe(true);
    expect(Value.Check(MessagesFrameSchema, JSON.parse(messagesFrame("f1", [])))).toBe(true);
    expect(Value.Check(AuthedFrameSchema, JSON.parse(authedFrame("a1", 1_900_000_000_123)))).toBe(true);
    expect(JSON.parse(authedFrame("a1", 1_900_000_000_123))).toEqual({ type: "authed", ref: "a1", exp: 1_900_000_000 });
    expect(Value.Check(AuthedFrameSchema, JSON.parse(authedFrame("a1", undefined)))).toBe(true);
  });
});
