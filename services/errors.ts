import { Errors } from "moleculer";
import { asRoutingError } from "../core/errors.ts";

/** Integrators calling actions get the same codes as HTTP clients: type = the contract code. */
export function toMoleculerError(err: unknown): Error {
  const error = asRoutingError(err);
  return error.retryable
    ? new Errors.MoleculerRetryableError(error.message, error.status, error.code)
    : new Errors.MoleculerClientError(error.message, error.status, error.code);
}

/** Wraps an action body so every failure leaves as a Moleculer error with the contract's code. */
export async function mapped<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toMoleculerError(err);
  }
}
