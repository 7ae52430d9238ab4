/** The client's lifetime: `close()` ends every pending wait at once. */
export interface Life {
  closed: boolean;
  readonly wakers: Set<() => void>;
}

/** Waits `ms`, or less if the client closes meanwhile. */
export const sleep = (ms: number, life: Life): Promise<void> =>
  new Promise((resolve) => {
    if (life.closed) return resolve();
    const wake = () => {
      clearTimeout(timer);
      life.wakers.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    life.wakers.add(wake);
  });
