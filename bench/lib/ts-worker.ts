/**
 * Worker threads that run TypeScript. tsx's loader is registered per thread (Node 20 does not
 * pass `--import tsx` on to workers, and rejects it in a worker's execArgv), so each worker
 * registers it first and then imports its module.
 */
import { Worker } from "node:worker_threads";

const TSX_API = import.meta.resolve("tsx/esm/api");

export function tsWorker(file: URL, workerData: unknown): Worker {
  const boot = `const { register } = await import(${JSON.stringify(TSX_API)}); register(); await import(${JSON.stringify(file.href)});`;
  return new Worker(boot, { eval: true, workerData });
}

/** Request/response over a worker's message port: one outstanding call per worker at a time. */
export function workerCaller(worker: Worker) {
  let pending: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  worker.on("message", (msg: { ok: boolean; value?: unknown; error?: string }) => {
    const p = pending;
    pending = undefined;
    if (!p) return;
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new Error(msg.error));
  });
  worker.on("error", (err) => {
    pending?.reject(err);
    pending = undefined;
  });
  return <T>(command: object): Promise<T> => {
    if (pending) return Promise.reject(new Error("worker busy"));
    return new Promise<T>((resolve, reject) => {
      pending = { resolve: resolve as (v: unknown) => void, reject };
      worker.postMessage(command);
    });
  };
}
