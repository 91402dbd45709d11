// load.ts --metrics: do the fleet's own counts agree with what the load generator saw (issue 11, "after
// a load run, the metrics' counts equal load.ts's")? Every given /metrics URL (the API's, each
// worker's) is scraped before the first POST and again once every result is in. Counters are
// cumulative since each process started, so DELTAS are compared, summed over the URLs: the API's
// finished counter and a worker's submit counters stay 0, so no URL needs to say what it is. The
// deltas count every task the processes saw: the system must carry no other traffic during the run.
import type { Tracker } from "./tracker.ts";
import { parsePromText, sumOf, type Sample } from "./prom-text.ts";

/** What load.ts counted in http mode. */
export interface LoadCounts {
  /** POST /tasks requests made */
  submitted: number;
  /** answered 2xx with a task_id (ours: 202) */
  accepted: number;
  /** refused, or the request failed */
  rejected: number;
  done: number;
  failed: number;
}

export interface CheckRow {
  /** the metric, with the label it is filtered on */
  metric: string;
  load: number;
  /** the delta summed over every URL */
  metrics: number;
  ok: boolean;
  /** the delta of each URL */
  by_url: Record<string, number>;
}

export interface MetricsCheck {
  ok: boolean;
  rows: CheckRow[];
  urls: string[];
  /** from the last result (the first re-read) until the counts agreed, or the deadline */
  waited_ms: number;
  /** scrapes that failed at the end, counters that went down (a restart), a missing worker */
  problems: string[];
}

export class ScrapeError extends Error {
  override name = "ScrapeError";
}

const ROWS: { metric: string; name: string; where?: Record<string, string>; of: (c: LoadCounts) => number }[] = [
  { metric: "agent_tasks_submitted_total", name: "agent_tasks_submitted_total", of: (c) => c.submitted },
  { metric: "agent_tasks_accepted_total", name: "agent_tasks_accepted_total", of: (c) => c.accepted },
  { metric: "agent_tasks_rejected_total (all reasons)", name: "agent_tasks_rejected_total", of: (c) => c.rejected },
  { metric: 'agent_tasks_finished_total{status="done"}', name: "agent_tasks_finished_total", where: { status: "done" }, of: (c) => c.done },
  { metric: 'agent_tasks_finished_total{status="failed"}', name: "agent_tasks_finished_total", where: { status: "failed" }, of: (c) => c.failed },
];

/** A URL as printed: without user:password, should one be in it. */
export function shownUrl(u: string): string {
  const url = new URL(u);
  url.username = "";
  url.password = "";
  return url.toString();
}

export const countsOf = (t: Tracker): LoadCounts => ({
  submitted: t.submitted,
  accepted: t.accepted,
  rejected: t.rejectedTotal,
  done: t.done,
  failed: t.failed,
});

async function scrape(url: string, token: string | undefined): Promise<Sample[]> {
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5_000) });
  } catch (e) {
    throw new ScrapeError(`GET ${shownUrl(url)}: ${(e as Error).message}`);
  }
  const text = await res.text().catch(() => "");
  if (res.status !== 200) {
    const hint = res.status === 401 ? " (set METRICS_TOKEN to the fleet's token)" : res.status === 404 ? " (the URL must end in /metrics)" : "";
    throw new ScrapeError(`GET ${shownUrl(url)}: ${res.status}${hint}`);
  }
  try {
    return parsePromText(text);
  } catch (e) {
    throw new ScrapeError(`GET ${shownUrl(url)}: not Prometheus text: ${(e as Error).message}`);
  }
}

export class MetricsProbe {
  #before: Sample[][] = [];
  /** the outcome of after() */
  result?: MetricsCheck;

  constructor(
    readonly urls: string[],
    private readonly token: string | undefined,
    /** how long the counts may take to catch up after the last result */
    private readonly settleMs = 10_000,
  ) {}

  /** The first scrape of every URL, before anything is sent. Throws ScrapeError (load.ts: exit 2). */
  async before(): Promise<void> {
    this.#before = await Promise.all(this.urls.map((u) => scrape(u, this.token)));
  }

  /**
   * Scrapes until the deltas equal `c` or `settleMs` passed. A worker bumps its finished counter after
   * publishing the result, which load.ts may receive first (and the API counts a refusal after
   * answering it): so the counts are re-read until they agree, never after a fixed sleep.
   */
  async after(c: LoadCounts): Promise<MetricsCheck> {
    const start = performance.now();
    const deadline = start + this.settleMs;
    for (;;) {
      const now = await Promise.allSettled(this.urls.map((u) => scrape(u, this.token)));
      const check = this.#compare(c, now);
      check.waited_ms = Math.round(performance.now() - start);
      if (check.ok || performance.now() >= deadline) return (this.result = check);
      await Bun.sleep(200);
    }
  }

  #compare(c: LoadCounts, now: PromiseSettledResult<Sample[]>[]): MetricsCheck {
    const problems: string[] = [];
    const shown = this.urls.map(shownUrl);
    now.forEach((r) => {
      if (r.status === "rejected") problems.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
    });
    const rows = ROWS.map((row): CheckRow => {
      const by_url: Record<string, number> = {};
      let total = 0;
      now.forEach((r, i) => {
        if (r.status !== "fulfilled") return;
        const d = sumOf(r.value, row.name, row.where) - sumOf(this.#before[i]!, row.name, row.where);
        if (d < 0) problems.push(`${row.metric} went down at ${shown[i]} (${d}): did the process restart during the run?`);
        by_url[shown[i]!] = d;
        total += d;
      });
      const load = row.of(c);
      return { metric: row.metric, load, metrics: total, ok: total === load, by_url };
    });
    const finished = rows.filter((r) => r.metric.startsWith("agent_tasks_finished_total"));
    if (c.done + c.failed > 0 && finished.every((r) => r.metrics === 0))
      problems.push("no URL counted a finished task: give every worker's /metrics URL (WORKER_METRICS_PORT)");
    return { ok: problems.length === 0 && rows.every((r) => r.ok), rows, urls: shown, waited_ms: 0, problems };
  }
}

export function formatCheck(m: MetricsCheck): string {
  const w = Math.max(...m.rows.map((r) => r.metric.length));
  const lines = [
    `metrics check: deltas over the run, summed over ${m.urls.length} URL${m.urls.length === 1 ? "" : "s"}`,
    `  ${"metric".padEnd(w)}  ${"load.ts".padStart(8)}  ${"metrics".padStart(8)}  ok`,
    ...m.rows.map((r) => `  ${r.metric.padEnd(w)}  ${String(r.load).padStart(8)}  ${String(r.metrics).padStart(8)}  ${r.ok ? "yes" : "NO"}`),
    ...m.problems.map((p) => `  ! ${p}`),
    m.ok ? `metrics check: ok (agreed within ${m.waited_ms} ms of the last result)` : `metrics check: MISMATCH (re-read for ${m.waited_ms} ms after the last result)`,
  ];
  return lines.join("\n");
}
