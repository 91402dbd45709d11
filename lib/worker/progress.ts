// The agent's `progress()` (lib/agent/types.ts) for one run: reports are merged into the latest state
// (a report of `pct` keeps the `partial` of the one before) and written to Redis under the claim
// (lib/lua/progress.lua: the task's `progress` field and a `progress` event) at most every
// `everyMs`; the last state is always written, by flush() before the result is recorded. A report
// never fails or slows the run: writes are in the background, one at a time, and a failed one is only
// logged (the next report carries the state again).
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { TaskProgress } from "../model.ts";
import type { TaskStore } from "../store.ts";

/** Caps that keep one report (and the event stream) small; `partial` keeps its beginning. */
export const PROGRESS_MESSAGE_MAX = 1_000;
export const PROGRESS_PARTIAL_MAX = 16_384;

/** The report as stored: pct a finite number in 0-100, strings capped; anything else is dropped. */
export function cleanProgress(p: unknown): TaskProgress {
  const out: TaskProgress = {};
  if (!p || typeof p !== "object") return out;
  const { pct, message, partial } = p as Record<string, unknown>;
  if (typeof pct === "number" && Number.isFinite(pct)) out.pct = Math.min(100, Math.max(0, pct));
  if (typeof message === "string") out.message = message.slice(0, PROGRESS_MESSAGE_MAX);
  if (typeof partial === "string") out.partial = partial.slice(0, PROGRESS_PARTIAL_MAX);
  return out;
}

export interface ProgressReporter {
  report(p: TaskProgress): void;
  /** Writes the last state if it was not written yet; resolves once written (or failed). */
  flush(): Promise<void>;
  /** No more writes (the run ended without a result, or lost its claim). */
  stop(): void;
}

export function progressReporter(store: TaskStore, taskId: string, token: string, log: Logger, everyMs = 250): ProgressReporter {
  let state: TaskProgress = {};
  let dirty = false;
  let stopped = false;
  let lastWrite = -Infinity;
  let writing: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const write = (): Promise<void> => {
    dirty = false;
    lastWrite = performance.now();
    const p = store.progress(taskId, token, state).then(
      () => {},
      (e) => log.debug("progress not written", { error: toError(e) }),
    );
    const settled: Promise<void> = p.finally(() => {
      if (writing === settled) writing = undefined;
      schedule(); // a report that came during the write
    });
    writing = settled;
    return settled;
  };
  /** Writes now, or arms the timer for when the interval has passed; a write in flight reschedules at its end. */
  const schedule = () => {
    if (stopped || timer || writing || !dirty) return;
    const wait = lastWrite + everyMs - performance.now();
    if (wait <= 0) {
      void write();
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      schedule();
    }, wait);
  };

  return {
    report(p) {
      if (stopped) return;
      state = { ...state, ...cleanProgress(p) };
      dirty = true;
      schedule();
    },
    async flush() {
      if (stopped) return;
      stopped = true; // no more scheduled writes: only the one below
      clearTimeout(timer);
      while (writing) await writing;
      if (dirty) await write();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
