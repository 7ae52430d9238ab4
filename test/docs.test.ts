import { describe, expect, it } from "vitest";
import { createTokenVerifier, JWT_CLOCK_TOLERANCE_SECONDS } from "../auth/jose-verifier.ts";
import { SignJWT } from "jose";
import { CLIENT_SETTINGS, configTable } from "../bin/config-doc.ts";
import { errorTable } from "../bin/errors-doc.ts";
import { ConfigSchema } from "../config/schema.ts";
import { CLOSE } from "../core/close-codes.ts";
import { ClientFrameSchema } from "../core/frames.ts";
import { AuthedFrameSchema, ErrorFrameSchema, MessageFrameSchema, MessagesFrameSchema, PokeFrameSchema, SentFrameSchema } from "../core/server-frames.ts";
import { HTTP_ROUTES } from "../gateway/http-routes.ts";
import { readDoc, section } from "./helpers/markdown.ts";

const protocol = readDoc("docs/protocol.md");

describe("docs stay generated from the code", () => {
  it("docs/configuration.md has the config table the schema prints", () => {
    expect(readDoc("docs/configuration.md")).toContain(configTable());
  });
  it("docs/protocol.md has the error table the registry prints", () => {
    expect(protocol).toContain(errorTable());
  });
  it("docs/protocol.md lists every close code", () => {
    for (const [name, code] of Object.entries(CLOSE)) expect(protocol).toContain(`| ${code} | ${name} |`);
  });
  it("docs/protocol.md has the client settings, as the schema prints them", () => {
    expect(section(protocol, "client-settings")).toBe(configTable(CLIENT_SETTINGS));
  });
});

describe("docs/protocol.md matches the wire", () => {
  it("lists exactly the HTTP routes the handler serves", () => {
    const documented = section(protocol, "routes")
      .split("\n")
      .slice(2)
      .map((row) => /^\| (GET|POST|DELETE|PUT|PATCH) \| `([^`]+)` \|/.exec(row))
      .map((m) => (m ? `${m[1]} ${m[2]}` : "malformed row"));
    const served = Object.entries(HTTP_ROUTES).flatMap(([path, methods]) => methods.map((method) => `${method} ${path}`));
    expect(documented.sort()).toEqual(served.sort());
  });

  it("lists exactly the WebSocket frames of each direction", () => {
    const rows = section(protocol, "frames").split("\n").slice(2);
    const documented = rows.map((row) => {
      const m = /^\| (client → server|server → client) \| `\{"type":"([a-z]+)"/.exec(row);
      return m ? `${m[1]} ${m[2]}` : "malformed row";
    });
    const client = ClientFrameSchema.anyOf.map((s) => `client → server ${s.properties.type.const}`);
    const server = [PokeFrameSchema, MessageFrameSchema, SentFrameSchema, MessagesFrameSchema, ErrorFrameSchema, AuthedFrameSchema].map(
      (s) => `server → client ${s.properties.type.const}`,
    );
    expect(documented.sort()).toEqual([...client, ...server].sort());
  });

  it("names the default MQTT topics and paths", () => {
    const p = ConfigSchema.properties;
    for (const value of [
      p.mqttIngestTopic.default,
      p.mqttReceiveTopic.default.replace("{urn}", "<own URN>"),
      p.mqttAckTopic.default.replace("{urn}", "<own URN>"),
      p.mqttWsPath.default,
    ]) {
      expect(protocol, String(value)).toContain(`\`${String(value)}`);
    }
  });

  it("states the JWT clock tolerance the verifier applies", async () => {
    expect(protocol).toContain(`clock tolerance of ${JWT_CLOCK_TOLERANCE_SECONDS} s`);
    // ...and the default verifier applies exactly that: a token expired just inside it passes, just outside is refused.
    const secret = "docs-test-secret-0123456789";
    const exp = Math.floor(Date.now() / 1000) - 10;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setIssuedAt(exp - 60)
      .setExpirationTime(exp)
      .sign(new TextEncoder().encode(secret));
    const at = (sec: number) => createTokenVerifier({ secret, now: () => (exp + sec) * 1000 }).verify(token);
    await expect(at(JWT_CLOCK_TOLERANCE_SECONDS - 1)).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    await expect(at(JWT_CLOCK_TOLERANCE_SECONDS + 1)).rejects.toMatchObject({ code: "TOKEN_EXPIRED" });
  });
});
