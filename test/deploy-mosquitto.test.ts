import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connackRefusal, mqttConnect, type MqttTestClient } from "./helpers/mqtt.ts";
import { freePort } from "./helpers/ports.ts";

/**
 * docker-compose.yml's Mosquitto, run for real: the local `mosquitto` binary with
 * deploy/mosquitto/mosquitto.conf (only its port, bind address and file paths rewritten), the
 * password file made the way the compose command makes it, and deploy/mosquitto/acl as it is.
 */
const ROOT = new URL("../", import.meta.url).pathname;
const SERVICE_PASSWORD = "service-secret-for-test";
const users = { alice: "alice-password", bob: "bob-password" };
let dir: string;
let port: number;
let broker: ChildProcess;
let url: string;
const clients: MqttTestClient[] = [];
let out = "";

/** The compose service's command, with the container paths mapped into `dir`. */
function composeBrokerCommand(): string {
  const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as { services: Record<string, { command: string[] }> };
  return compose.services["mqtt-broker"].command[2];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "routing-mosquitto-"));
  mkdirSync(join(dir, "data"));
  port = await freePort();
  url = `mqtt://127.0.0.1:${port}`;
  // The password steps of the compose command, here: copy the clients' file, add the service's user.
  const command = composeBrokerCommand();
  expect(command).toContain("cp /mosquitto/config/clients.passwd /mosquitto/run/passwd");
  expect(command).toContain('mosquitto_passwd -b /mosquitto/run/passwd routing-service "$$MQTT_SERVICE_PASSWORD"');
  copyFileSync(join(ROOT, "deploy/mosquitto/clients.passwd"), join(dir, "passwd"));
  execFileSync("mosquitto_passwd", ["-b", join(dir, "passwd"), "routing-service", SERVICE_PASSWORD]);
  // The clients a deployer adds to clients.passwd.
  for (const [name, password] of Object.entries(users)) execFileSync("mosquitto_passwd", ["-b", join(dir, "passwd"), name, password]);
  // As the compose command does: mosquitto (started as root, it drops to its own user) owns the file.
  chmodSync(dir, 0o755);
  chmodSync(join(dir, "passwd"), 0o600);
  if (process.getuid?.() === 0) execFileSync("chown", ["-R", "mosquitto", join(dir, "passwd"), join(dir, "data")]);

  const conf = readFileSync(join(ROOT, "deploy/mosquitto/mosquitto.conf"), "utf8");
  const rewritten = conf
    .replace(/^listener 1883 0\.0\.0\.0$/m, `listener ${port} 127.0.0.1`)
    .replace(/^password_file \/mosquitto\/run\/passwd$/m, `password_file ${join(dir, "passwd")}`)
    .replace(/^acl_file \/mosquitto\/config\/acl$/m, `acl_file ${join(ROOT, "deploy/mosquitto/acl")}`)
    .replace(/^persistence_location \/mosquitto\/data\/$/m, `persistence_location ${join(dir, "data")}/`);
  // Every line that names a port or a container path was rewritten (the file still says what it said).
  const settings = rewritten.split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  expect(settings.filter((l) => /(^|\s)\/mosquitto\/|1883/.test(l))).toEqual([]);
  expect(settings).toEqual(expect.arrayContaining(["allow_anonymous false", "persistence true"]));
  writeFileSync(join(dir, "mosquitto.conf"), rewritten);
  broker = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], { stdio: ["ignore", "pipe", "pipe"] });
  broker.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  broker.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  let exited = false;
  broker.once("exit", () => (exited = true));
  // Ready when it accepts a TCP connection (its log to stdout is block-buffered through a pipe).
  const until = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`mosquitto exited:\n${out}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connectTcp(port, "127.0.0.1", () => (socket.end(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > until) throw new Error(`mosquitto did not listen:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}, 30_000);

// Members of one share group split its messages: each test's clients leave before the next test.
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end()));
});

afterAll(async () => {
  broker?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

async function as(username: string, password: string): Promise<MqttTestClient> {
  const c = await mqttConnect(url, { protocolVersion: 5, username, password, clientId: `${username}-${Math.random().toString(16).slice(2)}` });
  clients.push(c);
  return c;
}

/** The PUBACK reason code of a QoS 1 publish (0: accepted; 0x87: not authorized). */
async function publishReason(c: MqttTestClient, topic: string, payload: string): Promise<number> {
  try {
    const ack = await c.client.publishAsync(topic, payload, { qos: 1 });
    return (ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

describe("docker-compose.yml's Mosquitto (password file + ACL), on the real broker", () => {
  it("refuses anonymous clients and wrong passwords", async () => {
    expect(await connackRefusal(url, { protocolVersion: 5, clientId: "anon" })).toBe(0x87);
    // Mosquitto 2.0 answers a wrong password 0x87 (not authorized), later versions 0x86 (bad user name or password).
    expect([0x86, 0x87]).toContain(await connackRefusal(url, { protocolVersion: 5, clientId: "wrong", username: "alice", password: "not-hers" }));
  });

  it("a client may publish only to its own envelopes/send/<urn>: a spoofed sender is refused and never reaches the service", async () => {
    const service = await as("routing-service", SERVICE_PASSWORD);
    const granted = await service.client.subscribeAsync(["$share/routing/envelopes/send/+", "$share/routing/clients/+/ack"], { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1, 1]);
    const alice = await as("alice", users.alice);
    expect(await publishReason(alice, "envelopes/send/urn:sm:user:bob", '{"spoof":true}')).toBe(0x87);
    expect(await publishReason(alice, "envelopes/send/urn:sm:user:alice", '{"own":true}')).toBe(0);
    const own = await service.next((r) => r.topic === "envelopes/send/urn:sm:user:alice");
    expect(own.frame).toEqual({ own: true });
    // The spoof came first from the same client: had it passed, it would have arrived first.
    expect(service.received.map((r) => r.topic)).toEqual(["envelopes/send/urn:sm:user:alice"]);
  });

  it("a client reads only its own receive topic and acks only on its own ack topic; the service publishes deliveries", async () => {
    const service = await as("routing-service", SERVICE_PASSWORD);
    await service.client.subscribeAsync("$share/routing/clients/+/ack", { qos: 1 });
    const bob = await as("bob", users.bob);
    // Mosquitto grants the subscription and applies `read` on delivery: alice's frames never reach bob.
    await bob.client.subscribeAsync(["clients/urn:sm:user:alice/receive", "clients/urn:sm:user:bob/receive"], { qos: 1 });
    expect(await publishReason(service, "clients/urn:sm:user:alice/receive", '{"type":"poke","for":"alice"}')).toBe(0);
    expect(await publishReason(service, "clients/urn:sm:user:bob/receive", '{"type":"poke"}')).toBe(0);
    expect((await bob.next((r) => r.topic === "clients/urn:sm:user:bob/receive")).frame).toEqual({ type: "poke" });
    expect(bob.received.map((r) => r.topic)).toEqual(["clients/urn:sm:user:bob/receive"]);
    expect(await publishReason(bob, "clients/urn:sm:user:alice/ack", '{"messageIds":["x"]}')).toBe(0x87);
    expect(await publishReason(bob, "clients/urn:sm:user:bob/ack", '{"messageIds":["y"]}')).toBe(0);
    expect((await service.next((r) => r.topic === "clients/urn:sm:user:bob/ack")).frame).toEqual({ messageIds: ["y"] });
    // A client cannot publish deliveries to anyone, itself included.
    expect(await publishReason(bob, "clients/urn:sm:user:bob/receive", '{"type":"poke"}')).toBe(0x87);
  });

  it("the compose healthcheck's command succeeds against it", () => {
    const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { healthcheck: { test: string[] } }>;
    };
    const [kind, shell] = compose.services["mqtt-broker"].healthcheck.test;
    expect(kind).toBe("CMD-SHELL");
    // Compose turns $$ into $; the port is this test's.
    const command = shell.replaceAll("$$", "$").replace("-p 1883", `-p ${port}`);
    const run = spawnSync("sh", ["-c", command], {
      env: { PATH: process.env.PATH, MQTT_SERVICE_PASSWORD: SERVICE_PASSWORD },
      encoding: "utf8",
      timeout: 10_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const wrong = spawnSync("sh", ["-c", command], { env: { PATH: process.env.PATH, MQTT_SERVICE_PASSWORD: "wrong" }, encoding: "utf8", timeout: 10_000 });
    expect(wrong.status).not.toBe(0);
  });
});
