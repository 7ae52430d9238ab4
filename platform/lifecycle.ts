import type { Service, ServiceSchema } from "moleculer";

/**
 * A service of this process, with the one extra hook the drain needs: `draining` runs for every
 * service at once, synchronously, the moment a stop begins (readiness 503, no new sockets, no new
 * sends), before any service stops.
 */
export interface PartSchema extends ServiceSchema {
  draining?: () => void;
}

type Handler = (this: Service) => unknown;

function single(handler: ServiceSchema["started"], part: string, hook: string): Handler | undefined {
  if (handler === undefined) return undefined;
  if (Array.isArray(handler)) throw new Error(`${part}: one ${hook} handler, please`);
  return handler as Handler;
}

function localDependencies(schema: ServiceSchema, names: ReadonlySet<string>): string[] {
  const declared = schema.dependencies === undefined ? [] : Array.isArray(schema.dependencies) ? schema.dependencies : [schema.dependencies];
  return declared.map((d) => (typeof d === "string" ? d : d.name)).filter((name) => names.has(name));
}

interface Gate {
  readonly promise: Promise<void>;
  open(): void;
  fail(err: unknown): void;
}

function gate(): Gate {
  let open: () => void = () => {};
  let fail: (err: unknown) => void = () => {};
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  promise.catch(() => {}); // a failed start is reported by broker.start(), not as an unhandled rejection
  return { promise, open, fail };
}

/**
 * The life cycle of this process's services, in dependency order. Moleculer starts and stops every
 * local service at once, and its `dependencies` are satisfied by a service on ANY node of the
 * cluster; so each service here also waits for its local dependencies' `started` before its own,
 * and its `stopped` runs only after every local service depending on it has stopped. `broker.stop()`
 * therefore takes the process down edge first (gateway, MQTT), then routing, then presence and
 * the backends, each finishing its work before what it uses goes away.
 *
 * A service whose `started` never ran (start-up failed before it) skips its own `stopped`.
 */
export function createLifecycle(options: { onDrain?: () => void } = {}) {
  const parts: PartSchema[] = [];
  const started = new Map<string, Gate>();
  const stopped = new Map<string, Gate>();
  let draining = false;

  /**
   * Registers a part with the services it uses (its Moleculer `dependencies`); returns the schema to
   * hand to `broker.createService`. The composition root states the graph, so a service can still be
   * hosted alone (tests: one service on a bare broker).
   */
  function part(given: PartSchema, dependencies: readonly string[] = []): ServiceSchema {
    const schema: PartSchema = dependencies.length > 0 ? { ...given, dependencies: [...dependencies] } : given;
    if (started.has(schema.name)) throw new Error(`service ${schema.name} is registered twice`);
    parts.push(schema);
    started.set(schema.name, gate());
    stopped.set(schema.name, gate());
    const start = single(schema.started, schema.name, "started");
    const stop = single(schema.stopped, schema.name, "stopped");
    let began = false;
    let stopping: Promise<void> | undefined;
    const { draining: _hook, ...rest } = schema;
    return {
      ...rest,
      async started(this: Service) {
        const mine = started.get(schema.name) as Gate;
        try {
          const names = new Set(started.keys());
          await Promise.all(localDependencies(schema, names).map((d) => (started.get(d) as Gate).promise));
          began = true;
          await start?.call(this);
          mine.open();
        } catch (err) {
          mine.fail(err);
          throw err;
        }
      },
      stopped(this: Service) {
        // Once per part, however often the broker is stopped.
        stopping ??= (async () => {
          const mine = stopped.get(schema.name) as Gate;
          try {
            const dependents = parts.filter((p) => localDependencies(p, new Set([schema.name])).length > 0).map((p) => (stopped.get(p.name) as Gate).promise);
            await Promise.all(dependents);
            if (began) await stop?.call(this);
          } catch (err) {
            this.logger.error({ err }, `stopping ${schema.name} failed`);
            throw err;
          } finally {
            mine.open();
          }
        })();
        return stopping;
      },
    };
  }

  /** Every part's `draining` hook, once, at the first call. */
  function beginDrain(): void {
    if (draining) return;
    draining = true;
    options.onDrain?.();
    for (const p of parts) p.draining?.();
  }

  /** The order parts stop in (for the docs and the tests): a part comes after all that depend on it. */
  function stopOrder(): string[][] {
    const left = new Set(parts.map((p) => p.name));
    const waves: string[][] = [];
    while (left.size > 0) {
      const wave = [...left].filter((name) => !parts.some((p) => left.has(p.name) && localDependencies(p, new Set([name])).length > 0));
      if (wave.length === 0) throw new Error(`dependency cycle among ${[...left].join(", ")}`);
      waves.push(wave.sort());
      for (const name of wave) left.delete(name);
    }
    return waves;
  }

  return {
    part,
    beginDrain,
    draining: () => draining,
    stopOrder,
    /** A Moleculer middleware: `broker.stop()`, however it is called, begins the drain first. */
    middleware: { stopping: () => beginDrain() },
  };
}

export type Lifecycle = ReturnType<typeof createLifecycle>;
