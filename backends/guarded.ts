import { RoutingError, unavailable } from "../core/errors.ts";

/**
 * Runs one role operation: a closed role or any backend failure becomes BACKEND_UNAVAILABLE, with
 * the failure as `cause` and a message that names the operation only (never payload bytes).
 */
export async function guarded<T>(what: string, isOpen: boolean, op: () => T | Promise<T>): Promise<T> {
  if (!isOpen) throw unavailable(`${what}: closed`);
  try {
    return await op();
  } catch (err) {
    if (err instanceof RoutingError) throw err;
    throw unavailable(`${what} failed`, err);
  }
}
