/** `npm start`: one routing node on the configured backends (embedded by default). */
// First: heap settings hold before anything else allocates.
import "../runtime/heap-flags.ts";
import { startNode } from "../runtime/node.ts";
import { runProcess } from "../runtime/process.ts";

runProcess(async (config, explicit) => {
  const node = await startNode(config, explicit);
  return { shutdown: () => node.shutdown(), log: (message) => node.broker.getLogger("routing").info(message) };
}, "draining");
