/** The coordinator's handle on its load worker threads. */
import type { Worker } from "node:worker_threads";
import type { Command } from "../workers/messages.ts";
import { tsWorker, workerCaller } from "./ts-worker.ts";

export interface WorkerPool {
  readonly size: number;
  /** Sends each worker its command (made per worker index) and waits for all answers. */
  all<T>(command: (worker: number) => Command): Promise<T[]>;
  close(): Promise<void>;
}

export function startWorkers(size: number): WorkerPool {
  const workers: Worker[] = Array.from({ length: size }, (_, i) => tsWorker(new URL("../workers/route-worker.ts", import.meta.url), { index: i }));
  const callers = workers.map(workerCaller);
  return {
    size,
    all: <T>(command: (worker: number) => Command) => Promise.all(callers.map((call, i) => call<T>(command(i)))),
    close: async () => {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
