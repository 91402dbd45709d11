// Accounting of one run: what was submitted, accepted, rejected, finished; latency samples; the summary.
import type { RssFigures } from "./rss.ts";
import { perSecond, summarize, type Percentiles } from "./stats.ts";

export interface TaskRecord {
  /** performance.now() when the submit (POST or send) was answered with success */
  acceptedAt: number;
  finishedAt?: number;
  status?: "done" | "failed";
}

export interface Verification {
  checked: number;
  agreed: number;
  /** "task <id>: result says done, GET says running", ... */
  problems: string[];
}

export interface Summary {
  mode: "http" | "mq";
  tasks: number;
  accepted: number;
  /** HTTP status code (or "error" for a failed request / send) -> count */
  rejected: Record<string, number>;
  done: number;
  failed: number;
  /** accepted but no result before the timeout */
  lost: number;
  /** result messages for a task already finished (redeliveries, duplicates) */
  duplicates: number;
  submit_per_s: number;
  /** results per second from the start of submitting to the last result */
  done_per_s: number;
  /** results per second from the first result to the last: the rate once the pipeline is full */
  done_steady_per_s: number;
  submit_ms: Percentiles;
  e2e_ms: Percentiles;
  wall_s: number;
  submit_wall_s: number;
  verify?: Verification;
  /** pid -> RSS figures of the processes given with --watch-pid */
  rss?: Record<string, RssFigures>;
  settings: Record<string, unknown>;
}

export class Tracker {
  startedAt = performance.now();
  submitted = 0;
  done = 0;
  failed = 0;
  duplicates = 0;
  readonly rejected: Record<string, number> = {};
  readonly records = new Map<string, TaskRecord>();
  readonly submitMs: number[] = [];
  readonly e2eMs: number[] = [];
  /** results that arrived before their submit was answered (possible with a fast agent): id -> at */
  readonly #early = new Map<string, { at: number; status: "done" | "failed" }>();
  submitEndedAt = 0;
  endedAt = 0;
  firstFinishedAt = 0;
  lastFinishedAt = 0;
  #allFinished?: () => void;

  /** Marks the start of submitting (after set-up), which the rates and wall time count from. */
  start() {
    this.startedAt = performance.now();
  }

  get accepted() {
    return this.records.size;
  }
  get rejectedTotal() {
    return Object.values(this.rejected).reduce((a, b) => a + b, 0);
  }
  get outstanding() {
    return this.accepted - this.done - this.failed;
  }

  reject(reason: string) {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
  }

  accept(id: string, sentAt: number, at = performance.now()) {
    this.submitMs.push(at - sentAt);
    this.records.set(id, { acceptedAt: at });
    const early = this.#early.get(id);
    if (early) {
      this.#early.delete(id);
      this.finish(id, early.status, early.at);
    }
  }

  /** A result for `id` arrived; results of other runs sharing the topic are ignored. */
  finish(id: string, status: "done" | "failed", at = performance.now()) {
    const r = this.records.get(id);
    if (!r) {
      // Not (yet) accepted: keep it in case the submit's answer is still on its way.
      if (this.submitted > this.accepted + this.rejectedTotal) this.#early.set(id, { at, status });
      return;
    }
    if (r.status) {
      this.duplicates++;
      return;
    }
    r.status = status;
    r.finishedAt = at;
    this.e2eMs.push(Math.max(0, at - r.acceptedAt));
    if (status === "done") this.done++;
    else this.failed++;
    this.firstFinishedAt ||= at;
    this.lastFinishedAt = at;
    if (this.submitEndedAt && this.outstanding === 0) this.#allFinished?.();
  }

  /** Resolves when every accepted task has a result, or after `timeoutMs`. Call after the last submit. */
  waitForResults(timeoutMs: number): Promise<void> {
    this.submitEndedAt ||= performance.now();
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#allFinished = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Marks the end of the run (results in or timed out), before clean-up and checks. */
  end() {
    this.endedAt ||= performance.now();
  }

  summary(mode: "http" | "mq", tasks: number, settings: Record<string, unknown>, verify?: Verification): Summary {
    const end = this.endedAt || performance.now();
    const submitWindow = (this.submitEndedAt || end) - this.startedAt;
    const finished = this.done + this.failed;
    return {
      mode,
      tasks,
      accepted: this.accepted,
      rejected: { ...this.rejected },
      done: this.done,
      failed: this.failed,
      lost: this.outstanding,
      duplicates: this.duplicates,
      submit_per_s: perSecond(this.accepted, submitWindow),
      done_per_s: perSecond(finished, (this.lastFinishedAt || end) - this.startedAt),
      done_steady_per_s: perSecond(Math.max(0, finished - 1), this.lastFinishedAt - this.firstFinishedAt),
      submit_ms: summarize(this.submitMs),
      e2e_ms: summarize(this.e2eMs),
      wall_s: Math.round((end - this.startedAt) / 10) / 100,
      submit_wall_s: Math.round(submitWindow / 10) / 100,
      ...(verify ? { verify } : {}),
      settings,
    };
  }
}

export function formatSummary(s: Summary): string {
  const p = (x: Percentiles) => `p50 ${x.p50}  p95 ${x.p95}  p99 ${x.p99}  max ${x.max} ms`;
  const rejected = Object.entries(s.rejected).map(([k, v]) => `${k}: ${v}`).join(", ");
  const lines = [
    `mode ${s.mode}: ${s.tasks} tasks, ${s.accepted} accepted${rejected ? `, rejected {${rejected}}` : ""}`,
    `done ${s.done}  failed ${s.failed}  lost ${s.lost}${s.duplicates ? `  duplicates ${s.duplicates}` : ""}`,
    `submit  ${s.submit_per_s}/s over ${s.submit_wall_s} s; latency ${p(s.submit_ms)}`,
    `results ${s.done_per_s}/s (${s.done_steady_per_s}/s from first to last); end-to-end ${p(s.e2e_ms)}`,
    `wall ${s.wall_s} s`,
  ];
  for (const [pid, r] of Object.entries(s.rss ?? {}))
    lines.push(`rss of pid ${pid}: start ${r.start_mib} MiB, peak ${r.peak_mib} MiB, end ${r.end_mib} MiB`);
  if (s.verify)
    lines.push(`verify: ${s.verify.agreed}/${s.verify.checked} GET /tasks/:id agree` + (s.verify.problems.length ? `\n  ${s.verify.problems.join("\n  ")}` : ""));
  return lines.join("\n");
}
