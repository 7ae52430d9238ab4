/** How long a readiness probe may take before the backend counts as unreachable. */
export const READY_TIMEOUT_MS = 2_000;

/** A readiness probe bounded in time: false if `check` fails or has not answered within the timeout. */
export function readyWithin(check: Promise<unknown>, isReady: (answer: unknown) => boolean = () => true, ms = READY_TIMEOUT_MS): Promise<boolean> {
  const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref());
  return Promise.race([check.then(isReady, () => false), timeout]);
}
