// Everything the dashboard shows, read in a bounded number of Redis commands whatever the number of
// tasks (lib/ops/minutes.ts, workers.ts), plus the broker's backlog (backlog.ts). Cached briefly, so
// several open dashboards polling every 2 s cost one read each period, and the backlog (a few
// remoting requests per queue) is asked at most every BACKLOG_EVERY_MS.
import type { Admin } from "../rocketmq/admin.ts";
import { send } from "../scripts.ts";
import type { TaskStore } from "../store.ts";
import { readBacklog } from "./backlog.ts";
import { readWindow, type Window } from "./minutes.ts";
import { listDeadLetters, type DeadLetterEntry } from "./tasks.ts";
import { liveWorkers, type WorkerInfo } from "./workers.ts";

export const OVERVIEW_EVERY_MS = 1_000;
export const BACKLOG_EVERY_MS = 5_000;
/** Failures and dead letters listed. */
export const LISTED = 20;

export interface Failure {
  task_id: string;
  /** its status now: a retried one shows queued, running or done */
  status: string;
  error?: string;
  finished_at?: string;
  attempts: number;
}

export interface Overview {
  at: string;
  counts: {
    /** tasks running now: the live workers' in-flight messages */
    running: number;
    /** messages in RocketMQ no worker has received yet; null when the broker did not answer */
    backlog: number | null;
    done_last_hour: number;
    failed_last_hour: number;
    retried_last_hour: number;
  };
  backlog_error?: string;
  hour: Window;
  workers: WorkerInfo[];
  failures: Failure[];
  dead_letters: DeadLetterEntry[];
}

export class OverviewReader {
  #cached?: { at: number; value: Promise<Overview> };
  #backlog?: { at: number; value: Promise<{ n: number | null; error?: string }> };

  constructor(
    private readonly store: TaskStore,
    private readonly admin: Admin,
    private readonly topic: string,
    private readonly group: string,
  ) {}

  read(): Promise<Overview> {
    const now = Date.now();
    if (this.#cached && now - this.#cached.at < OVERVIEW_EVERY_MS) return this.#cached.value;
    const value = this.#read();
    this.#cached = { at: now, value };
    value.catch(() => (this.#cached = undefined)); // a failure is not cached
    return value;
  }

  #readBacklog() {
    const now = Date.now();
    if (!this.#backlog || now - this.#backlog.at >= BACKLOG_EVERY_MS)
      this.#backlog = {
        at: now,
        value: readBacklog(this.admin, this.topic, this.group).then(
          (b) => ({ n: b.messages }),
          (e) => ({ n: null, error: (e as Error).message }),
        ),
      };
    return this.#backlog.value;
  }

  async #read(): Promise<Overview> {
    const { store } = this;
    const fk = store.keys.recentFailures;
    const [hour, workers, failedIds, deadLetters, backlog] = await Promise.all([
      readWindow(store.redis, store.keys, 60),
      liveWorkers(store.redis, store.keys),
      send<string[]>(store.redis, fk, ["LRANGE", fk, "0", String(LISTED * 2 - 1)]),
      listDeadLetters(store, LISTED),
      this.#readBacklog(),
    ]);
    const ids = [...new Set(failedIds ?? [])].slice(0, LISTED);
    const views = await Promise.all(ids.map((id) => store.get(id)));
    const failures: Failure[] = [];
    views.forEach((v, i) => {
      if (v) failures.push({ task_id: ids[i]!, status: v.status, error: v.error, finished_at: v.finished_at, attempts: v.attempts });
    });
    return {
      at: new Date().toISOString(),
      counts: {
        running: workers.reduce((a, w) => a + w.in_flight, 0),
        backlog: backlog.n,
        done_last_hour: hour.done,
        failed_last_hour: hour.failed,
        retried_last_hour: hour.retry,
      },
      ...(backlog.error ? { backlog_error: backlog.error } : {}),
      hour,
      workers,
      failures,
      dead_letters: deadLetters,
    };
  }
}
