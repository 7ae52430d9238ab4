import type { AuthenticateError } from "aedes";
import type { Principal, TokenVerifier } from "../auth/verifier.ts";
import { asRoutingError } from "../core/errors.ts";
import type { DeliveryMode } from "../gateway/sessions.ts";
import { isTopicSafe } from "./topics.ts";

/**
 * MQTT 3.1.1 CONNACK return codes the broker refuses with (aedes 1.2 speaks 3.1 and 3.1.1 only;
 * an MQTT 5 CONNECT is refused by aedes itself with 1, unacceptable protocol version).
 */
export const CONNACK = {
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const;

type ConnackRefusal = (typeof CONNACK)[keyof typeof CONNACK];

export function connectRefusal(returnCode: ConnackRefusal, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** A refusal as is; anything else (a bug) refuses with 3, server unavailable, without its text. */
export function asConnectRefusal(err: unknown): AuthenticateError {
  if (err instanceof Error && typeof (err as { returnCode?: unknown }).returnCode === "number") return err as AuthenticateError;
  return connectRefusal(CONNACK.SERVER_UNAVAILABLE, "internal error");
}

/**
 * The CONNECT username picks the delivery mode: `push` gets the messages themselves, anything
 * else (`poke`, empty, a user name) pokes. MQTT 3.1.1 cannot send a password without a username,
 * so every client sends one; its value carries nothing else.
 */
export function deliveryModeOf(username: string | undefined): DeliveryMode {
  return username === "push" ? "push" : "poke";
}

/**
 * The JWT in the CONNECT password, verified like a bearer token. Refusals: no, bad or expired
 * token, or a `sub` that is no identity: 4 (bad user name or password); the JWKS unreachable: 3
 * (server unavailable, retry); an identity that cannot be one MQTT topic level (`/`, `+`, `#`): 5
 * (not authorized).
 */
export async function verifyConnect(verifier: TokenVerifier, password: Buffer | undefined): Promise<Principal> {
  let principal: Principal;
  try {
    principal = await verifier.verify(password === undefined ? undefined : password.toString("utf8"));
  } catch (err) {
    const error = asRoutingError(err);
    throw connectRefusal(error.code === "BACKEND_UNAVAILABLE" ? CONNACK.SERVER_UNAVAILABLE : CONNACK.BAD_USERNAME_OR_PASSWORD, error.code);
  }
  if (!isTopicSafe(principal.identity)) throw connectRefusal(CONNACK.NOT_AUTHORIZED, "identity not usable as an MQTT topic level");
  return principal;
}
