import { createActor, type ActorScope, type SnapshotFrom } from "xstate";
import type { SessionEvent, SessionInput, SessionMachine } from "../actors/session/machine.ts";
import { TimerQueue, type TimerEntry } from "./timer-queue.ts";

export type SessionSnapshot = SnapshotFrom<SessionMachine>;
/** An action a transition returned (built-in ones by their `xstate.` type, the host's by name). */
type Action = { type: string; info: unknown; params: unknown; exec?: unknown };

/** What the runner keeps on each session it runs. */
export interface RunnableSession {
  snapshot: SessionSnapshot;
  /** Its pending delayed events (a list through `Delay.next`). */
  delays: Delay | undefined;
  /** Told every new snapshot, after the transition's effects ran. */
  next(snapshot: SessionSnapshot): void;
}

/** One delayed event of one session (an `after`, the token expiry) on the shared timer queue. */
export class Delay {
  next: Delay | undefined;
  entry: TimerEntry<Delay> | undefined;
  constructor(
    readonly session: RunnableSession,
    readonly id: string | undefined,
    readonly event: SessionEvent,
  ) {}
}

/** A queued start: the session's initial state from its input. */
class Start {
  constructor(readonly input: SessionInput) {}
}

/** The parts of a snapshot the runner shares between sessions (frozen: XState replaces, never mutates them). */
const NO_TAGS: ReadonlySet<string> = new Set<string>();
const NO_CHILDREN = Object.freeze({});
const NO_HISTORY = Object.freeze({});

/**
 * The snapshot a session keeps: a copy of the one the transition made (XState's own is left as it
 * made it), sharing what is the same for every session in a state. Measured (issue 16): XState's
 * snapshot carries its own empty tag Set, children and history objects and list of active state
 * nodes, ~340 of its ~650 B.
 */
function retained(snapshot: SessionSnapshot, nodesByState: Map<string, readonly unknown[]>): SessionSnapshot {
  const parts = snapshot as unknown as { tags: ReadonlySet<string>; children: object; historyValue: object; _nodes: readonly unknown[] };
  let nodes = parts._nodes;
  if (typeof snapshot.value === "string") {
    const shared = nodesByState.get(snapshot.value);
    if (shared === undefined) nodesByState.set(snapshot.value, Object.freeze(nodes));
    else nodes = shared;
  }
  return {
    ...snapshot,
    tags: parts.tags.size === 0 ? NO_TAGS : parts.tags,
    children: Object.keys(parts.children).length === 0 ? NO_CHILDREN : parts.children,
    historyValue: Object.keys(parts.historyValue).length === 0 ? NO_HISTORY : parts.historyValue,
    _nodes: nodes,
  } as SessionSnapshot;
}

/**
 * Runs the session machine for every session of a host without an actor per session: each session
 * is a snapshot, advanced by the machine's own pure transition (`machine.transition`, what XState's
 * `transition()` calls, with one actor scope for the host instead of a throwaway actor per call:
 * ~2 µs a transition, not ~90). The transition's actions come back as data and run here: the
 * host's effects (`exec`), delayed events on one TimerQueue for all sessions, their cancels.
 * Events are processed one at a time in arrival order (an effect that answers at once queues its
 * event behind the current one, as an actor's mailbox does); a session that is done ignores events.
 *
 * Why (bench/micro/session-memory.ts): a live actor per idle session retained ~5 KB (its actor
 * system ~2 KB, two Node timers ~350 B); a snapshot and one timer entry are a fraction of it.
 */
export function createSessionRunner(machine: SessionMachine, onError: (err: unknown, session: RunnableSession) => void) {
  const collected: Action[] = [];
  // One inert actor (never started) as the scope's `self`, as XState's own `transition()` makes per call.
  const self = createActor(machine, { input: { sessionId: "", protocol: "ws", authTimeoutMs: 0, heartbeatMs: 0, drainTimeoutMs: 0 } });
  const scope = {
    self,
    system: self.system,
    id: "",
    sessionId: "",
    logger: () => {},
    defer: () => {},
    emit: () => {},
    stopChild: () => {},
    actionExecutor: (action: Action) => void collected.push(action),
  } as unknown as ActorScope<SessionSnapshot, SessionEvent>;
  const timers = new TimerQueue<Delay>((delay) => {
    unlink(delay);
    send(delay.session, delay.event);
  });
  const queue: Array<RunnableSession | SessionEvent | Start> = [];
  const nodesByState = new Map<string, readonly unknown[]>();
  let busy = false;

  function unlink(delay: Delay): void {
    const { session } = delay;
    if (session.delays === delay) session.delays = delay.next;
    else for (let d = session.delays; d !== undefined; d = d.next) if (d.next === delay) d.next = delay.next;
  }

  function schedule(session: RunnableSession, id: string | undefined, event: SessionEvent, delayMs: number): void {
    const delay = new Delay(session, id, event);
    delay.next = session.delays;
    session.delays = delay;
    delay.entry = timers.add(delayMs, delay);
  }

  function cancel(session: RunnableSession, id: string | undefined): void {
    for (let d = session.delays; d !== undefined; d = d.next) {
      if (d.id !== id || d.entry === undefined) continue;
      timers.remove(d.entry);
      unlink(d);
    }
  }

  function cancelAll(session: RunnableSession): void {
    for (let d = session.delays; d !== undefined; d = d.next) if (d.entry !== undefined) timers.remove(d.entry);
    session.delays = undefined;
  }

  /** Reports an error of one session; a reporter that throws too must not stop the others. */
  function report(err: unknown, session: RunnableSession): void {
    try {
      onError(err, session);
    } catch {
      // Nothing left to tell.
    }
  }

  /**
   * Moves the session to `snapshot`, runs the actions that led there, then tells the session. Each
   * action runs on its own: one that throws is reported and the rest still run (timers, cancels,
   * closing the socket), and the session always hears of its new snapshot.
   */
  function settle(session: RunnableSession, snapshot: SessionSnapshot): void {
    session.snapshot = retained(snapshot, nodesByState);
    const actions = collected.splice(0);
    for (const action of actions) {
      try {
        if (action.type === "xstate.raise") {
          const { event, id, delay } = action.params as { event: SessionEvent; id?: string; delay?: number };
          if (delay !== undefined) schedule(session, id, event, delay);
        } else if (action.type === "xstate.cancel") cancel(session, (action.params as { sendId: string }).sendId);
        else if (typeof action.exec === "function") (action.exec as (info: unknown, params: unknown) => void)(action.info, action.params);
        // Anything else the session machine does not use (children, sendTo) has no executor here.
      } catch (err) {
        report(err, session);
      }
    }
    if (snapshot.status !== "active") cancelAll(session);
    // The snapshot it keeps, so what observers are told is what getSnapshot() answers.
    session.next(session.snapshot);
  }

  /** One step: the initial state (input) or the event's transition; a transition that throws is reported, not thrown. */
  function step(session: RunnableSession, item: SessionEvent | Start): void {
    let snapshot: SessionSnapshot;
    try {
      snapshot = item instanceof Start ? machine.getInitialSnapshot(scope, item.input) : machine.transition(session.snapshot, item, scope);
    } catch (err) {
      collected.length = 0;
      report(err, session);
      return;
    }
    settle(session, snapshot);
  }

  /** Queues a step for a session, behind the one being processed if any (as an actor's mailbox does). */
  function enqueue(session: RunnableSession, item: SessionEvent | Start): void {
    queue.push(session, item);
    if (busy) return;
    busy = true;
    try {
      for (let i = 0; i < queue.length; i += 2) {
        const target = queue[i] as RunnableSession;
        const next = queue[i + 1] as SessionEvent | Start;
        if (next instanceof Start || target.snapshot.status === "active") step(target, next);
      }
    } finally {
      queue.length = 0;
      busy = false;
    }
  }

  /** Sends one event to a session (queued behind the one being processed, if any). */
  function send(session: RunnableSession, event: SessionEvent): void {
    enqueue(session, event);
  }

  /** Starts a session at the machine's initial state (runs its entry effects); an effect answering at once is queued behind it. */
  function start(session: RunnableSession, input: SessionInput): void {
    enqueue(session, new Start(input));
  }

  return { start, send, pendingDelays: () => timers.size, stop: () => timers.clear() };
}

export type SessionRunner = ReturnType<typeof createSessionRunner>;
