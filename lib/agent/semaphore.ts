// Bounds the LLM calls one worker process has in flight (LLM_MAX_CONCURRENCY). A worker runs up to
// WORKER_CONCURRENCY tasks at once; a server answering one request at a time would otherwise queue
// them inside itself, where every queued call's own timeout runs.

/** First come, first served; a waiter whose signal aborts leaves the queue without taking a slot. */
export class Semaphore {
  private used = 0;
  private readonly waiters: { grant: () => void }[] = [];

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`semaphore needs at least 1 slot, got ${slots}`);
  }

  get inUse() {
    return this.used;
  }
  get waiting() {
    return this.waiters.length;
  }

  /** Resolves with a release function once a slot is free; rejects with the signal's reason on abort. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.used < this.slots) {
      this.used++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** A slot handed straight to the next waiter keeps `used` unchanged; a second call does nothing. */
  private releaser() {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.used--;
    };
  }
}
