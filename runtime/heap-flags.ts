/**
 * V8 heap settings the service applies to itself, imported first by its entry points so they hold
 * before any other module allocates. Set here rather than in the start command, so `npm start`,
 * the Docker image and anything else running the entry point get them alike.
 *
 * Why (issue 16, idle WebSocket connections): a session keeps ~1.5 KB of heap, but each handshake
 * allocates ~100 KB of short-lived objects (XState's transitions, jose, the upgrade), and what is
 * alive while handshakes wait for their verdicts gets promoted: ~7.5 KB per connection, mostly
 * garbage by the time the next full GC runs. The RSS then follows the old generation's peak,
 * which V8 lets grow to up to ~4x its live size between full GCs, and does not give back after.
 *
 * - `--no-allocation-site-pretenuring`: V8 tenures an allocation site once the objects it made
 *   survived a scavenge, and then allocates every later object of that site in the old
 *   generation, live or not. Under a burst of handshakes it tenured sites of XState's transitions,
 *   so every later transition's garbage went straight to the old generation.
 * - `--heap-growing-percent=50`: the old generation's next full-GC limit is 1.5x what was live
 *   after the last one, instead of V8's own factor (up to 4x on a small heap).
 *
 * Measured (bench `connections`, against the baseline without them in the same runs): RSS per
 * idle connection 8.28-8.50 -> 3.29-3.31 KiB at 19,700 held, 9.3-11.3 -> 3.5 KiB at 10,000; no
 * CPU cost measurable in `route` (ws/push/200B, saturation and 1k msg/s); see bench/results/README.md.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--no-allocation-site-pretenuring");
setFlagsFromString("--heap-growing-percent=50");
