// The run's TASK_TIMEOUT_MS clock, pausable: time a task spends queued for a shared resource (a slot
// toward the LLM, lib/agent/semaphore.ts) is not its run time, so a task that waits behind others
// does not time out for their work.

export interface RunClock {
  /** Runs `wait` with the clock stopped; nested and parallel pauses are counted. */
  paused<T>(wait: () => Promise<T>): Promise<T>;
  /** Ends the clock for good (the run is over): it never fires afterwards. */
  stop(): void;
}

export function runClock(ms: number, onTimeout: () => void, now = () => performance.now()): RunClock {
  let left = ms;
  let since = now();
  let pauses = 0;
  let over = false; // fired or stopped
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(fire, ms);
  function fire() {
    timer = undefined;
    if (over) return;
    over = true;
    onTimeout();
  }
  const pause = () => {
    if (++pauses > 1 || !timer) return;
    clearTimeout(timer);
    timer = undefined;
    left -= now() - since;
  };
  const resume = () => {
    if (--pauses > 0 || over) return;
    if (left <= 0) return fire();
    since = now();
    timer = setTimeout(fire, left);
  };
  return {
    async paused(wait) {
      pause();
      try {
        return await wait();
      } finally {
        resume();
      }
    },
    stop() {
      over = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
