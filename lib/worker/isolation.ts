// Running a suspect alone. A task whose earlier run died with its worker (claim.lua counts
// `crashes`) may be what kills workers (OOM, a crash in native code), and every task running beside
// it dies with it and is charged an attempt. So a suspect runs alone in its process: it waits for
// the lock, new claims in this process wait while it is pending or running, and it starts once the
// runs already claimed here have finished. Innocent tasks are then not killed with it again, and
// the suspect's own attempts (claim.lua, MAX_ATTEMPTS) are what fail it.
import { ShutdownAbort } from "./handle.ts";

export class Isolation {
  /** claimed runs in this process that are not isolated */
  #shared = 0;
  /** an isolated run holds the process (or waits for the shared runs to finish) */
  #exclusive = false;
  #lock: Promise<void> = Promise.resolve();
  #waiters: (() => void)[] = [];

  #changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new ShutdownAbort("worker shutting down"));
      const onAbort = () => reject(new ShutdownAbort("worker shutting down"));
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  #notify() {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** True when a claim would have to wait (an isolated run is pending or running). */
  get busy(): boolean {
    return this.#exclusive;
  }

  /**
   * Enters as a shared run, before claiming: waits while an isolated run holds the process. Returns
   * the function that leaves (safe to call twice).
   */
  async enter(signal: AbortSignal): Promise<() => void> {
    while (this.#exclusive) await this.#changed(signal);
    this.#shared++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#shared--;
      this.#notify();
    };
  }

  /** Runs `fn` alone in this process: takes the lock, blocks new claims, waits for shared runs to end. */
  async exclusive<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const prev = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((r) => (release = r));
    try {
      await Promise.race([prev, this.#changedUntil(prev, signal)]);
    } catch (e) {
      void prev.then(release); // our turn is given up: pass the lock on when it comes
      throw e;
    }
    this.#exclusive = true;
    try {
      while (this.#shared > 0) await this.#changed(signal);
      return await fn();
    } finally {
      this.#exclusive = false;
      release();
      this.#notify();
    }
  }

  /** Rejects on abort; never resolves otherwise (raced against `prev`). */
  #changedUntil(prev: Promise<void>, signal: AbortSignal): Promise<void> {
    return new Promise((_, reject) => {
      if (signal.aborted) return reject(new ShutdownAbort("worker shutting down"));
      const onAbort = () => reject(new ShutdownAbort("worker shutting down"));
      signal.addEventListener("abort", onAbort, { once: true });
      void prev.then(() => signal.removeEventListener("abort", onAbort));
    });
  }
}
