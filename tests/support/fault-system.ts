// The whole system as a user runs it, for fault tests: an API and workers as child processes with the
// recording agent (AGENT=record), a client that submits and follows tasks over HTTP, a collector of the
// result topic, and the check of the three invariants over the whole history (checkInvariants):
//   (i)   every accepted task ends done, or failed only when its agent failed (or, by the documented
//         policy, when every run of it was killed with its worker: a task that kills its worker);
//   (ii)  the agent never runs one task twice at the same time;
//   (iii) every done task has at least one result message.
// Plus what a client can see of a refused submit: a task whose POST was answered 503 never runs.
import { afterAll, afterEach, beforeAll } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeRun, overlaps, readEvents, runsByTask, type Run } from "../../scripts/chaos/history.ts";
import { createNamespace, type TestNamespace } from "../helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./processes.ts";
import { privateStack, type PrivateStack } from "./private-stack.ts";
import { collectResults } from "./results.ts";

export interface FaultSystemOptions {
  /** endpoints of a private stack (default: the shared one from the preload) */
  endpoints?: Record<string, string>;
  /** settings for provisioning, the API and the workers (MQ_RETRY_MAX_TIMES, MQ_INVISIBLE_MS, ...) */
  env?: Record<string, string>;
  /** start a new worker whenever one dies (a supervisor: systemd, Kubernetes), except in close() */
  supervise?: boolean;
}

export interface SubmitAttempt {
  content: string;
  /** HTTP status, or 0 when the request failed or timed out */
  status: number;
  ms: number;
  at: number;
  id?: string;
  /** of a refusal: its `error` code and Retry-After header */
  error?: string;
  retryAfter?: string | null;
}

export interface TaskView {
  task_id: string;
  status: string;
  error?: string;
  attempts: number;
}

export async function faultSystem(opts: FaultSystemOptions = {}) {
  const settings = opts.env ?? {};
  const ns: TestNamespace = await createNamespace({ env: { ...opts.endpoints, ...settings } });
  const recordDir = mkdtempSync(join(tmpdir(), "agent-prod-record-"));
  const port = freePort();
  const env: Record<string, string> = {
    ...ns.env,
    ...settings,
    AGENT: "record",
    AGENT_RECORD_DIR: recordDir,
    API_PORT: String(port),
    API_HOST: "127.0.0.1",
  };
  const base = `http://127.0.0.1:${port}`;
  const results = await collectResults(ns);
  const deaths = new Map<number, number>();
  const workers: Service[] = [];
  let api: Service | undefined;
  const t0 = Date.now();
  let closing = false;

  const startWorker = async (wait = true): Promise<Service> => {
    const w = new Service("worker.ts", env);
    workers.push(w);
    void w.exited.then(() => {
      if (!deaths.has(w.proc.pid)) deaths.set(w.proc.pid, Date.now());
      if (opts.supervise && !closing) void startWorker(false);
    });
    if (wait) await w.waitForLog("worker running", 90_000);
    return w;
  };
  const startApi = async () => {
    api = new Service("api.ts", env);
    void api.exited.then(() => {});
    await api.waitForLog("api listening", 60_000);
    return api;
  };

  const attempts: SubmitAttempt[] = [];
  /** content -> task id of its accepted submit */
  const accepted = new Map<string, string>();

  /** One POST, answered within `timeoutMs` or counted as status 0. */
  async function post(content: string, timeoutMs = 30_000): Promise<SubmitAttempt> {
    const at = Date.now();
    let a: SubmitAttempt;
    try {
      const res = await fetch(`${base}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "fault", content }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = (await res.json().catch(() => ({}))) as { task_id?: string; error?: string };
      a = {
        content,
        status: res.status,
        ms: Date.now() - at,
        at,
        ...(res.status === 202 ? { id: body.task_id } : { error: body.error, retryAfter: res.headers.get("retry-after") }),
      };
    } catch {
      a = { content, status: 0, ms: Date.now() - at, at };
    }
    attempts.push(a);
    if (a.id) accepted.set(content, a.id);
    return a;
  }

  /**
   * POSTs until accepted, as a client does after a 503 (Retry-After); returns the task id.
   * `answered`: every POST must get an answer (503 or 202); by default one with none is retried too.
   */
  async function submit(content: string, deadlineMs = 180_000, o: { answered?: boolean } = {}): Promise<string> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const a = await post(content);
      if (a.id) return a.id;
      if (a.status !== 503 && (a.status !== 0 || o.answered)) throw new Error(`POST answered ${a.status || "nothing"} for ${content}`);
      if (Date.now() > deadline) throw new Error(`${content} not accepted within ${deadlineMs} ms`);
      await Bun.sleep(500);
    }
  }

  /** GET /tasks/:id, or undefined when the API did not answer 200 (404, 503, no answer). */
  async function view(id: string, timeoutMs = 30_000): Promise<TaskView | undefined> {
    try {
      const res = await fetch(`${base}/tasks/${id}`, { signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) return undefined;
      return (await res.json()) as TaskView;
    } catch {
      return undefined;
    }
  }

  async function views(ids: string[]): Promise<Map<string, TaskView | undefined>> {
    const out = new Map<string, TaskView | undefined>();
    for (let i = 0; i < ids.length; i += 64) {
      const batch = ids.slice(i, i + 64);
      const got = await Promise.all(batch.map((id) => view(id)));
      batch.forEach((id, k) => out.set(id, got[k]));
    }
    return out;
  }

  /** Waits until every accepted task is done or failed (polling only those still open). */
  async function settled(timeoutMs: number) {
    const open = new Set(accepted.values());
    let last = new Map<string, TaskView | undefined>();
    await waitFor(
      async () => {
        // A task with a final result message is finished: GET only the others (3,000 GETs a poll is a load of its own).
        for (const id of open) if (results.for(id).some((r) => r.body.status === "done" || r.body.status === "failed")) open.delete(id);
        last = await views([...open]);
        for (const [id, v] of last) if (v && (v.status === "done" || v.status === "failed")) open.delete(id);
        return open.size === 0;
      },
      timeoutMs,
      () => {
        keep = true;
        const sample = [...open].slice(0, 5).map((id) => `${id}: ${last.get(id)?.status ?? "no answer"}`);
        return `${accepted.size} accepted tasks to finish; ${open.size} still open, e.g.\n  ${sample.join("\n  ")}\n(logs kept in ${keepDir})\n${logTail()}`;
      },
    );
  }

  function logTail(n = 15) {
    const parts = [api, ...workers].filter(Boolean).map((s, i) => `--- ${i === 0 ? "api" : `worker ${i}`} pid ${s!.proc.pid}\n${s!.raw.slice(-n).join("\n")}`);
    return parts.join("\n");
  }

  const runs = () => runsByTask(readEvents(recordDir), deaths);
  /** Waits until an agent run is in progress (its start recorded, no end yet): the work a crash should hit. */
  const running = (timeoutMs = 90_000) =>
    waitFor(() => [...runs().values()].flat().some((r) => r.end === Infinity), timeoutMs, "an agent run to be in progress");
  /** The runs in progress at `at` (started before it, ended after it): after a crash, the work it hit. */
  const runningAt = (at: number) => [...runs().values()].flat().filter((r) => r.start < at && r.end > at);
  /** Where the logs and run records are kept when a check found a problem (kept for a post-mortem). */
  const keepDir = join(tmpdir(), `agent-prod-faults-${ns.id}`);
  let keep = false;

  /**
   * Load in the background: `perSecond` submits a second (each retried after a 503 like a client
   * does, each POST timed), and as many GETs of accepted tasks. stop() ends it and returns what the
   * client saw: every answer's status and time.
   */
  function load(perSecond: number, prefix: string) {
    let stopped = false;
    const gets: { status: number; ms: number; at: number }[] = [];
    const pending = new Set<Promise<unknown>>();
    const track = (p: Promise<unknown>) => {
      pending.add(p);
      void p.finally(() => pending.delete(p));
    };
    let i = 0;
    const loop = (async () => {
      while (!stopped) {
        const content = `${prefix} ${i++}`;
        track(submit(content).catch(() => {}));
        const ids = [...accepted.values()];
        if (ids.length) {
          const id = ids[Math.floor(Math.random() * ids.length)]!;
          const at = Date.now();
          track(
            fetch(`${base}/tasks/${id}`, { signal: AbortSignal.timeout(30_000) })
              .then(async (r) => {
                await r.arrayBuffer();
                gets.push({ status: r.status, ms: Date.now() - at, at });
              })
              .catch(() => gets.push({ status: 0, ms: Date.now() - at, at })),
          );
        }
        await Bun.sleep(1000 / perSecond);
      }
    })();
    return {
      gets,
      async stop() {
        stopped = true;
        await loop;
        await Promise.all([...pending]);
        return { gets, posts: attempts.filter((a) => a.content.startsWith(`${prefix} `)) };
      },
    };
  }

  /**
   * The invariants over the whole history; returns the violations (empty when all hold), each with
   * the task and what happened to it. `mayFail(content)`: tasks whose failure is the expected outcome.
   */
  async function checkInvariants(o: { mayFail?: (content: string) => boolean } = {}): Promise<string[]> {
    const byTask = runs();
    const ids = [...accepted.values()];
    const contentOf = new Map([...accepted].map(([c, id]) => [id, c]));
    const final = await views(ids);
    // A result can be on the topic a moment before its task is marked done: look again at the rest.
    const finished = (v?: TaskView) => v?.status === "done" || v?.status === "failed";
    await waitFor(
      async () => {
        const rest = ids.filter((id) => !finished(final.get(id)));
        for (const [id, v] of await views(rest)) final.set(id, v);
        return rest.every((id) => finished(final.get(id)));
      },
      30_000,
      "",
    ).catch(() => {});
    // A result is published before its task is marked done, but the collector may receive it later
    // (a broker that just restarted hands out messages after a while): wait for them, bounded.
    const doneIds = ids.filter((id) => final.get(id)?.status === "done");
    await waitFor(() => doneIds.every((id) => results.for(id).some((r) => r.body.status === "done")), 90_000, "results").catch(() => {});
    const problems: string[] = [];
    const show = (list: Run[] = []) => list.map((r) => `\n      ${describeRun(r, t0)}`).join("");
    for (const id of ids) {
      const v = final.get(id);
      const list = byTask.get(id) ?? [];
      const content = contentOf.get(id)!;
      if (!v) problems.push(`(i) task ${id} (${content}) lost: GET /tasks/:id has no record of it${show(list)}`);
      else if (v.status === "failed") {
        const agentFailed = list.length > 0 && list.at(-1)!.outcome === "error";
        const killedEveryRun = list.length > 0 && list.every((r) => r.outcome === "killed");
        if (!agentFailed && !killedEveryRun && !o.mayFail?.(content))
          problems.push(`(i) task ${id} (${content}) failed although its agent did not fail: ${JSON.stringify(v.error)}, attempts ${v.attempts}${show(list)}`);
      } else if (v.status !== "done")
        problems.push(`(i) task ${id} (${content}) did not finish: ${v.status}, attempts ${v.attempts}${show(list)}`);
      else if (!results.for(id).some((r) => r.body.status === "done"))
        problems.push(`(iii) task ${id} (${content}) is done but the result topic has no done result for it (${results.for(id).length} messages)`);
    }
    for (const o2 of overlaps(byTask).tasks)
      problems.push(`(ii) task ${o2.task} (${contentOf.get(o2.task) ?? o2.runs[0]?.content}) ran ${o2.concurrent} times at once:${show(o2.runs)}`);
    // A refused submit (503) must not run: the client retries it, so it would run twice. A POST that
    // got no answer (client timeout, connection reset) may have been accepted: nobody can tell, so
    // such a content's extra run is not counted (an idempotency key is the client's remedy).
    const known = new Set(ids);
    const unanswered = new Set(attempts.filter((a) => a.status === 0).map((a) => a.content));
    for (const [task, list] of byTask)
      if (!known.has(task) && !unanswered.has(list[0]?.content ?? ""))
        problems.push(`refused task ran: task ${task} (${list[0]?.content}) was never accepted (its POST got a 503) but its agent ran${show(list)}`);
    if (problems.length) {
      keep = true;
      problems.unshift(`logs of the API and workers and the run records: ${keepDir} (written at close)`);
    }
    return problems;
  }

  return {
    ns,
    env,
    base,
    recordDir,
    results,
    attempts,
    accepted,
    workers,
    get api() {
      return api!;
    },
    t0,
    startApi,
    startWorker,
    post,
    submit,
    view,
    views,
    settled,
    runs,
    running,
    runningAt,
    load,
    checkInvariants,
    logTail,
    /** SIGKILLs a worker and waits for its death to be recorded. */
    async killWorker(w: Service) {
      w.proc.kill("SIGKILL");
      await w.exited;
      deaths.set(w.proc.pid, Date.now());
    },
    /** Workers alive now. */
    alive: () => workers.filter((w) => w.proc.exitCode === null && !w.proc.signalCode),
    async close() {
      closing = true;
      await Promise.all([...workers, ...(api ? [api] : [])].map((s) => s.stop(30_000)));
      if (keep) {
        mkdirSync(keepDir, { recursive: true });
        if (api) writeFileSync(join(keepDir, "api.log"), api.raw.join("\n"));
        workers.forEach((w, i) => writeFileSync(join(keepDir, `worker-${i}-pid${w.proc.pid}.log`), w.raw.join("\n")));
        writeFileSync(join(keepDir, "record.jsonl"), readEvents(recordDir).map((e) => JSON.stringify(e)).join("\n"));
        writeFileSync(join(keepDir, "submits.jsonl"), attempts.map((a) => JSON.stringify(a)).join("\n"));
      }
      await results.close().catch(() => {});
      await ns.cleanup().catch(() => {});
      rmSync(recordDir, { recursive: true, force: true });
    },
  };
}

export type FaultSystem = Awaited<ReturnType<typeof faultSystem>>;

/** Formats violations for an assertion message. */
export const report = (problems: string[]) => (problems.length ? `${problems.length} violation(s):\n${problems.slice(0, 20).join("\n")}` : "");

/**
 * The hooks of a fault suite that owns a private stack: the stack started before the first test, each
 * test's system (`ctx.sys`) closed after it, everything stopped after the last. Returns the context.
 */
export function onPrivateStack() {
  const ctx = { stack: undefined as unknown as PrivateStack, sys: undefined as FaultSystem | undefined };
  beforeAll(async () => {
    ctx.stack = await privateStack();
    await ctx.stack.up();
  }, 180_000);
  afterEach(async () => {
    await ctx.sys?.close();
    ctx.sys = undefined;
  }, 120_000);
  afterAll(async () => {
    await stopAll();
    await ctx.stack?.destroy();
  }, 180_000);
  return ctx;
}
