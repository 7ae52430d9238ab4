/**
 * `npx tsx bench/micro/stamp-equivalence.ts [cases]`: `stampEnvelopeJson` (the ingress hot path)
 * against `JSON.stringify(stampEnvelope(...))` (what it replaced) on random envelopes: key orders,
 * optional fields present, absent or undefined, non-ASCII identities, invalid ones. Same bytes, same
 * header, same errors, or it exits 1.
 */
import { stampEnvelope, stampEnvelopeJson } from "../../core/envelope.ts";
import type { Urn } from "../../core/urn.ts";

const cases = Number(process.argv[2] ?? 100_000);
const identity = "urn:sm:user:sender" as Urn;
const b64 = () => Buffer.from(String(Math.random()).repeat(1 + Math.floor(Math.random() * 30))).toString(Math.random() < 0.5 ? "base64" : "base64url");
const maybe = <T>(p: number, value: () => T): T | undefined | "absent" => (Math.random() < p ? (Math.random() < 0.9 ? value() : undefined) : "absent");

function envelope(i: number): Record<string, unknown> {
  const fields: Array<[string, unknown]> = [
    ["recipientId", i % 3 === 0 ? "urn:sm:user:ünïcödé" : i % 97 === 0 ? "not-a-urn" : "urn:sm:user:bob"],
    ["encryptedData", b64()],
    ["messageId", maybe(0.5, () => `m.${i}`)],
    ["senderId", maybe(0.3, () => (i % 50 === 0 ? "urn:sm:user:other" : identity))],
    ["isEphemeral", maybe(0.3, () => Math.random() < 0.5)],
    ["priority", maybe(0.3, () => Math.floor(Math.random() * 11))],
    ["encryptedSymmetricKey", maybe(0.4, b64)],
    ["signature", maybe(0.4, b64)],
  ];
  const present = fields.filter(([, v]) => v !== "absent").sort(() => Math.random() - 0.5);
  const value = Object.fromEntries(present);
  // Half as a parsed body (no undefined values), half as an in-process caller passes it.
  return Math.random() < 0.5 ? (JSON.parse(JSON.stringify(value)) as Record<string, unknown>) : value;
}

const outcome = (f: () => string): string => {
  try {
    return f();
  } catch (err) {
    return `error ${(err as { code?: string }).code}: ${(err as Error).message}`;
  }
};

let mismatches = 0;
for (let i = 0; i < cases; i++) {
  const value = envelope(i);
  const before = outcome(() => JSON.stringify(stampEnvelope(value, identity, () => "generated")));
  const after = outcome(() => {
    const { header, json } = stampEnvelopeJson(value, identity, () => "generated");
    const parsed = JSON.parse(json) as Record<string, unknown>;
    for (const key of ["recipientId", "messageId", "isEphemeral", "priority"] as const) {
      if (parsed[key] !== header[key]) throw new Error(`header ${key} differs from the JSON`);
    }
    return json;
  });
  if (before !== after && ++mismatches <= 5) console.log(`mismatch:\n  ${JSON.stringify(value)}\n  before ${before}\n  after  ${after}`);
}
console.log(`${cases} envelopes, ${mismatches} mismatches`);
process.exit(mismatches === 0 ? 0 : 1);
