/** setTimeout's ceiling: a later deadline wakes at this distance and re-arms. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** One pending deadline of a TimerQueue (`index` < 0: fired or removed). */
export interface TimerEntry<T> {
  readonly payload: T;
  readonly due: number;
  /** Its slot in the heap. */
  index: number;
}

/**
 * Every pending delay of many owners on one Node timer: a binary min-heap of deadlines, armed for
 * the earliest. Adding and removing cost O(log n), and an idle owner holds one small entry instead
 * of a Node timer (a Timeout and its callback: ~350 B measured per session) and a scheduler.
 * `fire` runs once per due entry, in deadline order (ties in insertion order are not promised).
 */
export class TimerQueue<T> {
  readonly #heap: TimerEntry<T>[] = [];
  readonly #fire: (payload: T) => void;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  /** The deadline the Node timer is armed for (Infinity: none). */
  #armedFor = Infinity;
  #running = false;

  constructor(fire: (payload: T) => void, now: () => number = () => performance.now()) {
    this.#fire = fire;
    this.#now = now;
  }

  get size(): number {
    return this.#heap.length;
  }

  /** Calls `fire(payload)` after `delayMs` (unless removed first). */
  add(delayMs: number, payload: T): TimerEntry<T> {
    const entry: TimerEntry<T> = { payload, due: this.#now() + Math.max(0, delayMs), index: this.#heap.length };
    this.#heap.push(entry);
    this.#up(entry.index);
    this.#arm();
    return entry;
  }

  /** Forgets an entry that has not fired (a no-op for one that fired or was removed). */
  remove(entry: TimerEntry<T>): void {
    const i = entry.index;
    if (i < 0) return;
    entry.index = -1;
    const last = this.#heap.pop() as TimerEntry<T>;
    if (i < this.#heap.length) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
    if (this.#heap.length === 0) this.#disarm();
  }

  /** Stops the Node timer and forgets every entry. */
  clear(): void {
    for (const entry of this.#heap) entry.index = -1;
    this.#heap.length = 0;
    this.#disarm();
  }

  #run(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#running = true;
    try {
      const now = this.#now();
      while (this.#heap.length > 0 && this.#heap[0].due <= now) {
        const entry = this.#heap[0];
        this.remove(entry);
        this.#fire(entry.payload);
      }
    } finally {
      this.#running = false;
      this.#arm();
    }
  }

  #arm(): void {
    if (this.#running || this.#heap.length === 0) return;
    const due = this.#heap[0].due;
    if (due >= this.#armedFor) return;
    this.#disarm();
    this.#armedFor = due;
    this.#timer = setTimeout(() => this.#run(), Math.min(MAX_TIMEOUT_MS, Math.max(0, Math.ceil(due - this.#now()))));
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #up(i: number): void {
    const heap = this.#heap;
    const entry = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].due <= entry.due) break;
      heap[i] = heap[parent];
      heap[i].index = i;
      i = parent;
    }
    heap[i] = entry;
    entry.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const entry = heap[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const child = left + 1 < heap.length && heap[left + 1].due < heap[left].due ? left + 1 : left;
      if (heap[child].due >= entry.due) break;
      heap[i] = heap[child];
      heap[i].index = i;
      i = child;
    }
    heap[i] = entry;
    entry.index = i;
  }
}
