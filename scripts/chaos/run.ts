// One chaos run: a namespace of its own on the local stack (topics, groups, Redis prefix), an API and
// workers of its own with the recording agent, open-loop load over HTTP, faults at random intervals
// for a bounded time, then a settle phase and the report built from the whole history.
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { type Config, parseConfig } from "../../lib/config.ts";
import { RESULT_TAG } from "../../lib/model.ts";
import { sleep } from "../../lib/time.ts";
import { silentLogger } from "../../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../../lib/redis.ts";
import { ApiKeys } from "../../lib/tenancy/api-keys.ts";
import { deprovision, provision, specFromConfig } from "../../lib/provision.ts";
import { adminFor, runId } from "../load/groups.ts";
import { deleteKeys, freePort } from "../load/processes.ts";
import { startReceiver, type Receiver } from "../load/receiver.ts";
import { stackDir } from "../stack/state.ts";
import { type Action, type ChaosOptions, type PartName, rng } from "./args.ts";
import { Children, type Child } from "./children.ts";
import { describeRun, maxConcurrent, overlaps, readEvents, runsByTask } from "./history.ts";
import { StackServers } from "./servers.ts";

export interface FaultRecord {
  /** seconds since the load started */
  at_s: number;
  part: PartName;
  action: Action;
  /** how long the part was stopped or down (s) */
  down_s: number;
  pid?: number;
  note?: string;
}

export interface ChaosReport {
  seed: number;
  duration_s: number;
  wall_s: number;
  settle_s: number;
  settings: Record<string, unknown>;
  faults: FaultRecord[];
  /** submits answered 202 */
  accepted: number;
  /** submits not accepted: HTTP status (or "timeout"/"error") -> count */
  refused: Record<string, number>;
  done: number;
  failed: number;
  /** failed although no run of its agent failed and not every run was killed with its worker */
  failed_unexplained: number;
  /** accepted and neither done nor failed at the end */
  lost: number;
  /** result messages beyond the first for a task */
  duplicate_results: number;
  /** done tasks without a done result message */
  missing_results: number;
  /** the most runs of one task at the same time (1 = never twice at once) */
  max_concurrent_runs: number;
  overlapping_tasks: number;
  /** tasks whose agent ran although their submit was refused (503) */
  refused_but_ran: number;
  /**
   * tasks whose agent ran although their POST got no answer (client timeout, connection reset): the
   * API may have accepted them before it hung or died; not a broken guarantee, a client's ambiguity
   */
  unanswered_but_ran: number;
  /** runs of the agent in all */
  runs: number;
  /** ended canceled */
  canceled: number;
  /**
   * with --cancel: answers to the cancellations asked (HTTP status, or "timeout"/"error") -> count, and
   * tasks that broke the promise (told 202 and not canceled at the end, or canceled unasked)
   */
  cancellations?: { answers: Record<string, number>; broken: number };
  /** with --delayed: delayed tasks accepted, and those with a run started before their run_at */
  delayed?: { accepted: number; ran_early: number };
  /**
   * with --idempotent: POSTs sent again with their key, tasks never accepted within 90 s of retries,
   * keys answered with two task ids, and contents that ran under a task id other than their key's
   */
  idempotency?: { retries: number; gave_up: number; two_ids: number; ran_twice: number };
  /** with --tenant-concurrency: its limit, its tasks accepted, and the most of them that ran at once */
  tenant?: { concurrency: number; accepted: number; max_running: number };
  /** the first problems found, described */
  problems: string[];
  run_dir?: string;
}

export type Progress = (line: string) => void;

let emergency: (() => void) | undefined;
/** For a second Ctrl-C: resume every paused server and kill the run's children, at once. */
export function emergencyStop() {
  emergency?.();
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(250);
  }
  return false;
}

/** Sleeps `ms`, or less when `signal` fires; never throws. */
const nap = (ms: number, signal: AbortSignal) => sleep(ms, signal).catch(() => {});

/**
 * `stop` (Ctrl-C) ends the load and the faults early: every part is resumed and restarted, the run
 * settles for at most 30 s and is reported as far as it went.
 */
export async function runChaos(
  o: ChaosOptions,
  env: Record<string, string | undefined>,
  progress?: Progress,
  stop: AbortSignal = new AbortController().signal,
): Promise<ChaosReport> {
  const dir = stackDir(o.dir ? ["--dir", o.dir] : [], env);
  const servers = new StackServers(dir, env);
  const wanted = o.parts.filter((p): p is "redis" | "broker" => p === "redis" || p === "broker");
  const refusals = wanted.map((s) => servers.refusal(s)).filter(Boolean);
  if (refusals.length) throw new Error(refusals.join("\n"));

  const id = runId().replace(/^load_/, "chaos_");
  const runDir = `/tmp/agent-prod-${id}`;
  const recordDir = `${runDir}/record`;
  mkdirSync(`${runDir}/logs`, { recursive: true });
  const port = freePort();
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  Object.assign(childEnv, {
    MQ_TOPIC_REQUEST: `${id}_req`,
    MQ_TOPIC_RESULT: `${id}_res`,
    MQ_GROUP_AGENT: `${id}_grp`,
    REDIS_PREFIX: `${id}:`,
    MQ_INVISIBLE_MS: String(o.invisibleMs),
    AGENT: "record",
    AGENT_RECORD_DIR: recordDir,
    AGENT_DELAY_MS: String(o.agentDelayMs),
    API_PORT: String(port),
    API_HOST: "127.0.0.1",
    // With a tenant, every request names its tenant by API key (AUTH_MODE=auto has none on loopback).
    ...(o.tenantConcurrency ? { AUTH_MODE: "keys" } : {}),
    // A delayed task whose timer message a broker crash lost is re-sent this long after its run_at
    // (reap.lua): within the settle time, not the default 10 min.
    ...(o.delayed > 0 ? { STALLED_AFTER_MS: "60000" } : {}),
  });
  const cfg: Config = parseConfig(childEnv);
  const admin = adminFor(cfg);
  const resultGroup = `${id}_res`;
  const spec = specFromConfig(cfg, { queues: Math.min(cfg.MQ_QUEUES, 8), extraGroups: [resultGroup] });
  await provision(admin, spec);
  const tenantKeys = o.tenantConcurrency ? await tenantApiKeys(cfg, o.tenantConcurrency) : undefined;
  /** The Authorization header of a task's requests, by its content (limited tenant or the other). */
  const auth = (content: string): Record<string, string> =>
    tenantKeys ? { authorization: `Bearer ${content.startsWith(TENANT_CONTENT) ? tenantKeys.limited : tenantKeys.other}` } : {};

  const base = `http://127.0.0.1:${port}`;
  const children = new Children(childEnv, `${runDir}/logs`);
  emergency = () => {
    servers.resumeAll();
    for (const c of children.all) {
      c.signal("SIGCONT");
      c.signal("SIGKILL");
    }
  };
  const r = rng(o.seed);
  // The load's own draws (which tasks are delayed or canceled): the fault schedule stays the seed's.
  const lr = rng(o.seed ^ 0x5bd1e995);
  /** delayed task id -> its run_at (ms) */
  const runAt = new Map<string, number>();
  /** task id -> the answer to its cancellation (HTTP status, "timeout", "error") */
  const cancels = new Map<string, string>();
  /** --idempotent: content -> the task id its key was first answered with; retries; keys answered two ids */
  const keyed = new Map<string, string>();
  const idem = { retries: 0, gave_up: 0, two_ids: 0 };
  const faults: FaultRecord[] = [];
  const accepted = new Map<string, string>(); // id -> content
  const refused: Record<string, number> = {};
  /** contents whose POST got no answer (timeout, connection error) */
  const unanswered = new Set<string>();
  const resultsOf = new Map<string, { done: number; failed: number }>();
  let receiver: Receiver | undefined;
  let current = "";
  let t0 = Date.now();
  const since = () => Math.round((Date.now() - t0) / 100) / 10;
  const workerPauseCapS = Math.max(1, Math.min(o.maxPauseS, o.invisibleMs / 2000));

  const draw = setInterval(() => {
    if (!progress) return;
    let done = 0;
    let failed = 0;
    for (const [tid, c] of resultsOf) if (accepted.has(tid)) c.done ? done++ : c.failed && failed++;
    const refusedN = Object.values(refused).reduce((a, b) => a + b, 0);
    progress(
      `chaos ${Math.min(since(), o.durationS).toFixed(0)}/${o.durationS} s  accepted ${accepted.size} refused ${refusedN} done ${done} failed ${failed}` +
        `  workers ${children.live("worker").length}/${o.workers}  faults ${faults.length}${current ? ` | ${current}` : ""}`,
    );
  }, 500);

  const startWorker = () => children.start("worker");
  const apiUp = () => waitFor(async () => (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined))?.ok === true, 60_000);

  try {
    receiver = await startReceiver(cfg, resultGroup, cfg.MQ_TOPIC_RESULT, RESULT_TAG, 2, (m) => {
      const body = JSON.parse(m.body.toString("utf8")) as { task_id?: string; status?: string };
      if (!body.task_id) return;
      const c = resultsOf.get(body.task_id) ?? { done: 0, failed: 0 };
      if (body.status === "done") c.done++;
      else c.failed++;
      resultsOf.set(body.task_id, c);
    });
    children.start("api");
    for (let i = 0; i < o.workers; i++) startWorker();
    if (!(await apiUp())) throw new Error(`the API did not answer on ${base} within 60 s (logs in ${runDir}/logs)`);
    const workersUp = () =>
      children.live("worker").every((w) => {
        try {
          return readFileSync(`${runDir}/logs/worker-${w.index}.log`, "utf8").includes('"worker running"');
        } catch {
          return false;
        }
      });
    await waitFor(workersUp, 120_000);

    // Load: open loop, one POST per task (no retry: a refused submit is the client's to retry).
    t0 = Date.now();
    let loadOn = true;
    const inflight = new Set<Promise<void>>();
    const load = (async () => {
      for (let i = 0; loadOn; i++) {
        const due = t0 + (i * 1000) / o.rate;
        const wait = due - Date.now();
        if (wait > 0) await nap(wait, stop);
        if (!loadOn || stop.aborted) break;
        const content = `${tenantKeys && i % 2 === 1 ? TENANT_CONTENT : "chaos "}${i}`;
        const delayMs = lr.next() < o.delayed ? Math.round(lr.between(1_000, 20_000)) : undefined;
        const cancelAfterMs = lr.next() < o.cancel ? Math.round(lr.between(0, 3_000)) : undefined;
        const post = () =>
          fetch(`${base}/tasks`, {
            method: "POST",
            headers: { "content-type": "application/json", ...auth(content), ...(o.idempotent ? { "idempotency-key": `chaos-${i}` } : {}) },
            body: JSON.stringify({ user_id: "chaos", content, ...(delayMs !== undefined ? { delay_ms: delayMs } : {}) }),
            signal: AbortSignal.timeout(10_000),
          });
        const p: Promise<void> = (o.idempotent ? postRetried(post, content) : post())
          .then(async (res) => {
            const body = (await res.json().catch(() => ({}))) as { task_id?: string; run_at?: string };
            const ok = res.status === 202 || (o.idempotent && res.status === 200);
            if (!ok || !body.task_id) return void (refused[String(res.status)] = (refused[String(res.status)] ?? 0) + 1);
            const tid = body.task_id;
            accepted.set(tid, content);
            if (body.run_at) runAt.set(tid, Date.parse(body.run_at));
            if (cancelAfterMs === undefined) return;
            await Bun.sleep(cancelAfterMs);
            const c = await fetch(`${base}/tasks/${tid}/cancel`, { method: "POST", headers: auth(content), signal: AbortSignal.timeout(10_000) }).then(
              (x) => String(x.status),
              (e: Error) => (e.name === "TimeoutError" ? "timeout" : "error"),
            );
            cancels.set(tid, c);
          })
          .catch((e: Error) => {
            const k = e.name === "TimeoutError" ? "timeout" : "error";
            unanswered.add(content);
            refused[k] = (refused[k] ?? 0) + 1;
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
    })();

    /**
     * Sends `post` until it is answered other than 503 or "in progress" (409 idempotency_in_progress),
     * for up to 90 s, 1 s apart: the same Idempotency-Key each time. Every answer naming a task must
     * name the key's first one. A POST still failing after 90 s is counted as given up (and as refused).
     */
    async function postRetried(post: () => Promise<Response>, content: string): Promise<Response> {
      const until = Date.now() + 90_000;
      const last = () => Date.now() >= until || stop.aborted;
      for (let n = 0; ; n++) {
        if (n > 0) idem.retries++;
        const res = await post().catch((e: Error) => {
          unanswered.add(content);
          if (!last()) return undefined;
          idem.gave_up++;
          throw e;
        });
        if (res) {
          const again = res.status === 503 || (res.status === 409 && res.headers.get("retry-after") !== null);
          if (!again || last()) {
            if (again) idem.gave_up++;
            const tid = ((await res.clone().json().catch(() => ({}))) as { task_id?: string }).task_id;
            if (tid && (res.status === 200 || res.status === 202)) {
              const first = keyed.get(content);
              if (first === undefined) keyed.set(content, tid);
              else if (first !== tid) idem.two_ids++;
            }
            return res;
          }
        }
        await nap(1_000, stop);
      }
    }

    // Faults, one at a time, each undone before the next gap.
    const endAt = t0 + o.durationS * 1000;
    while (Date.now() < endAt && !stop.aborted) {
      const gap = r.between(o.minGapS, o.maxGapS) * 1000;
      if (Date.now() + gap >= endAt) {
        await nap(Math.max(0, endAt - Date.now()), stop);
        break;
      }
      await nap(gap, stop);
      if (stop.aborted) break;
      const part = r.pick(o.parts);
      const action = r.pick(o.actions);
      const f: FaultRecord = { at_s: since(), part, action, down_s: 0 };
      current = `${part} ${action}`;
      const began = Date.now();
      try {
        await inject(f);
      } catch (e) {
        f.note = `failed: ${(e as Error).message.split("\n")[0]}`;
      }
      f.down_s = Math.round((Date.now() - began) / 100) / 10;
      faults.push(f);
      current = "";
    }
    loadOn = false;
    await load;
    await Promise.all([...inflight]);

    async function inject(f: FaultRecord) {
      const pauseS = (cap: number) => Math.round(r.between(Math.min(2, cap), cap) * 10) / 10;
      if (f.part === "worker" || f.part === "api") {
        const live = children.live(f.part);
        if (!live.length) return void (f.note = "none alive");
        const c: Child = r.pick(live);
        f.pid = c.pid;
        const replace = () => (f.part === "worker" ? startWorker() : children.start("api"));
        if (f.action === "kill") {
          c.signal("SIGKILL");
          await c.proc.exited;
          await Bun.sleep(1_000); // a supervisor's restart delay
          replace();
        } else if (f.action === "stop") {
          // A worker is paused for at most half its lease: a process paused past its lease cannot be
          // fenced by any lease (its run resumes after another worker took the task over).
          const s = pauseS(f.part === "worker" ? workerPauseCapS : o.maxPauseS);
          c.paused = true;
          c.signal("SIGSTOP");
          await nap(s * 1000, stop);
          c.signal("SIGCONT");
          c.paused = false;
        } else {
          // A rolling restart: the new one starts while the old one shuts down gracefully.
          if (f.part === "worker") replace();
          await c.stop(90_000);
          if (f.part === "api") replace();
        }
        if (f.part === "api") await apiUp();
        return;
      }
      const s = f.part;
      f.pid = servers.pid(s);
      if (f.action === "stop") {
        servers.pause(s);
        try {
          await nap(pauseS(o.maxPauseS) * 1000, stop);
        } finally {
          servers.resume(s);
        }
      } else {
        if (f.action === "kill") servers.kill(s);
        else await servers.stopGracefully(s);
        await Bun.sleep(r.between(1, 5) * 1000);
        await servers.up();
      }
    }

    // Settle: every part back, then wait for the accepted tasks to finish.
    current = "settling";
    servers.resumeAll();
    if (wanted.some((s) => servers.pid(s) === undefined)) await servers.up();
    while (children.live("worker").length < o.workers) startWorker();
    if (!children.live("api").length) children.start("api");
    await apiUp();
    const settleStart = Date.now();
    const open = new Set(accepted.keys());
    const statuses = new Map<string, { status: string; error?: string }>();
    const poll = async (ids: string[]) => {
      for (let i = 0; i < ids.length; i += 64)
        await Promise.all(
          ids.slice(i, i + 64).map(async (tid) => {
            const res = await fetch(`${base}/tasks/${tid}`, { headers: auth(accepted.get(tid)!), signal: AbortSignal.timeout(10_000) }).catch(
              () => undefined,
            );
            if (res?.status === 200) {
              const v = (await res.json()) as { status: string; error?: string };
              statuses.set(tid, v);
              if (v.status === "done" || v.status === "failed" || v.status === "canceled") open.delete(tid);
            } else if (res?.status === 404) statuses.set(tid, { status: "missing" });
          }),
        );
    };
    await waitFor(async () => {
      await poll([...open]);
      return open.size === 0 || (stop.aborted && Date.now() - settleStart > 30_000);
    }, o.settleS * 1000);
    const settleS = Math.round((Date.now() - settleStart) / 100) / 10;
    // A result is published before its task is marked done, but the receiver may get it later (a
    // broker that just restarted hands messages out after a while): wait for them, bounded.
    current = "waiting for results";
    const resultDue = () => [...statuses].filter(([tid, v]) => v.status === "done" && !resultsOf.get(tid)?.done).length === 0;
    await waitFor(() => resultDue() || stop.aborted, 120_000);
    clearInterval(draw);

    // The report, from the whole history.
    const byTask = runsByTask(readEvents(recordDir), children.deaths);
    const ov = overlaps(byTask);
    const problems: string[] = [];
    let done = 0;
    let failed = 0;
    let canceled = 0;
    let ranEarly = 0;
    let cancelBroken = 0;
    let failedUnexplained = 0;
    let lost = 0;
    let missingResults = 0;
    let duplicateResults = 0;
    for (const [tid, content] of accepted) {
      const v = statuses.get(tid);
      const runs = byTask.get(tid) ?? [];
      const rs = resultsOf.get(tid);
      if (rs) duplicateResults += Math.max(0, rs.done + rs.failed - 1);
      const due = runAt.get(tid);
      const early = due === undefined ? undefined : runs.find((x) => x.start < due);
      if (early) {
        ranEarly++;
        problems.push(`task ${tid} (${content}) ran ${due! - early.start} ms before its run_at`);
      }
      // A cancellation told 202 ends the task canceled, whatever its run did (README, Cancellation).
      if (cancels.get(tid) === "202" && v?.status !== "canceled" && v?.status !== undefined && v.status !== "missing") {
        cancelBroken++;
        problems.push(`task ${tid} (${content}) ended ${v.status} although its cancellation was answered 202`);
      }
      if (v?.status === "canceled") {
        canceled++;
        if (!cancels.has(tid)) {
          cancelBroken++;
          problems.push(`task ${tid} (${content}) ended canceled although nobody asked`);
        }
      } else if (v?.status === "done") {
        done++;
        if (!rs?.done) {
          missingResults++;
          problems.push(`task ${tid} (${content}) is done but has no done result message`);
        }
      } else if (v?.status === "failed") {
        failed++;
        const explained = runs.length > 0 && (runs.at(-1)!.outcome === "error" || runs.every((x) => x.outcome === "killed"));
        if (!explained) {
          failedUnexplained++;
          problems.push(`task ${tid} (${content}) failed although its agent did not: ${JSON.stringify(v.error)}`);
        }
      } else {
        lost++;
        problems.push(`task ${tid} (${content}) lost: ${v?.status ?? "no answer"} at the end (${runs.length} runs)`);
      }
    }
    for (const t of ov.tasks)
      problems.push(`task ${t.task} ran ${t.concurrent} times at once: ${t.runs.map((x) => describeRun(x, t0)).join("; ")}`);
    let tenant: ChaosReport["tenant"];
    if (o.tenantConcurrency) {
      const runs = [...byTask.values()].flat().filter((x) => x.content.startsWith(TENANT_CONTENT));
      tenant = {
        concurrency: o.tenantConcurrency,
        accepted: [...accepted.values()].filter((c) => c.startsWith(TENANT_CONTENT)).length,
        max_running: maxConcurrent(runs),
      };
      if (tenant.max_running > tenant.concurrency)
        problems.push(`the limited tenant had ${tenant.max_running} tasks running at once, over its limit of ${tenant.concurrency}`);
    }
    let ranTwice = 0;
    const acceptedContents = new Set(accepted.values());
    let refusedButRan = 0;
    let unansweredButRan = 0;
    for (const [tid, runs] of byTask)
      if (!accepted.has(tid)) {
        if (o.idempotent && acceptedContents.has(runs[0]?.content ?? "")) {
          // Its key was answered with another task: a POST retried with its key made a second one.
          ranTwice++;
          problems.push(`task ${tid} (${runs[0]?.content}) ran although its Idempotency-Key was answered with task ${keyed.get(runs[0]!.content)}`);
        } else if (unanswered.has(runs[0]?.content ?? "")) unansweredButRan++;
        else {
          refusedButRan++;
          problems.push(`task ${tid} (${runs[0]?.content}) ran although its submit was refused (503)`);
        }
      }
    return {
      seed: o.seed,
      duration_s: o.durationS,
      wall_s: Math.round((Date.now() - t0) / 100) / 10,
      settle_s: settleS,
      settings: {
        workers: o.workers,
        rate: o.rate,
        parts: o.parts,
        actions: o.actions,
        gap_s: [o.minGapS, o.maxGapS],
        max_pause_s: o.maxPauseS,
        worker_max_pause_s: workerPauseCapS,
        agent_delay_ms: o.agentDelayMs,
        invisible_ms: o.invisibleMs,
        ...(o.tenantConcurrency ? { tenant_concurrency: o.tenantConcurrency } : {}),
        delayed: o.delayed,
        cancel: o.cancel,
        idempotent: o.idempotent,
        retry_max_times: cfg.MQ_RETRY_MAX_TIMES,
        max_attempts: cfg.MAX_ATTEMPTS,
        stack_dir: dir,
      },
      faults,
      accepted: accepted.size,
      refused,
      done,
      failed,
      canceled,
      failed_unexplained: failedUnexplained,
      lost,
      duplicate_results: duplicateResults,
      missing_results: missingResults,
      max_concurrent_runs: ov.max,
      overlapping_tasks: ov.tasks.length,
      refused_but_ran: refusedButRan,
      unanswered_but_ran: unansweredButRan,
      runs: [...byTask.values()].reduce((a, l) => a + l.length, 0),
      ...(tenant ? { tenant } : {}),
      ...(o.idempotent ? { idempotency: { ...idem, ran_twice: ranTwice } } : {}),
      ...(o.cancel > 0 ? { cancellations: { answers: countBy(cancels.values()), broken: cancelBroken } } : {}),
      ...(o.delayed > 0 ? { delayed: { accepted: runAt.size, ran_early: ranEarly } } : {}),
      problems: problems.slice(0, 20),
      ...(o.keep || problems.length ? { run_dir: runDir } : {}),
    };
  } finally {
    clearInterval(draw);
    servers.resumeAll();
    await receiver?.close().catch(() => {});
    await children.stopAll();
    await deprovision(admin, spec).catch(() => {});
    admin.close();
    // Per-task keys start with their hash tag, `{<prefix>...` (lib/keys.ts); others with the prefix.
    await deleteKeys(cfg, "chaos", [`${cfg.REDIS_PREFIX}*`, `{${cfg.REDIS_PREFIX}*`]);
    if (!o.keep) rmSync(recordDir, { recursive: true, force: true });
  }
}

const countBy = (xs: Iterable<string>) => {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
};

/** Contents of the limited tenant's tasks start with this (the recording agent keeps the content). */
const TENANT_CONTENT = "chaos-tenant ";

/**
 * API keys in the run's namespace: of a tenant `chaos-limited` allowed `concurrency` tasks running at
 * once, and of a tenant `chaos` without limits (the other half of the load).
 */
async function tenantApiKeys(cfg: Config, concurrency: number): Promise<{ limited: string; other: string }> {
  const redis = createRedis(cfg, silentLogger);
  try {
    if (!(await connectRedis(redis))) throw new Error("could not connect to Redis to make the tenants' API keys");
    const keys = new ApiKeys(redis, cfg.REDIS_PREFIX);
    return { limited: (await keys.create("chaos-limited", { concurrency })).key, other: (await keys.create("chaos")).key };
  } finally {
    await closeRedis(redis);
  }
}

export function formatReport(rep: ChaosReport): string {
  const refused = Object.entries(rep.refused).map(([k, v]) => `${k}: ${v}`).join(", ");
  const byKind = new Map<string, number>();
  for (const f of rep.faults) byKind.set(`${f.part} ${f.action}`, (byKind.get(`${f.part} ${f.action}`) ?? 0) + 1);
  const lines = [
    `chaos: ${rep.duration_s} s of faults (seed ${rep.seed}), settled in ${rep.settle_s} s; wall ${rep.wall_s} s`,
    `faults: ${rep.faults.length} (${[...byKind].map(([k, v]) => `${k} ${v}`).join(", ")})`,
    `accepted ${rep.accepted}${refused ? `  refused {${refused}}` : ""}`,
    `done ${rep.done}  failed ${rep.failed} (unexplained ${rep.failed_unexplained})  canceled ${rep.canceled}  lost ${rep.lost}`,
    `duplicate results ${rep.duplicate_results}  missing results ${rep.missing_results}  refused (503) but ran ${rep.refused_but_ran}` +
      `  unanswered but ran ${rep.unanswered_but_ran}`,
    `most concurrent runs of one task: ${rep.max_concurrent_runs} (${rep.overlapping_tasks} tasks ran twice at once); ${rep.runs} runs in all`,
  ];
  if (rep.cancellations) {
    const answers = Object.entries(rep.cancellations.answers).map(([k, v]) => `${k}: ${v}`).join(", ");
    lines.push(`cancellations asked: {${answers}}, promise broken ${rep.cancellations.broken}`);
  }
  if (rep.idempotency) {
    const x = rep.idempotency;
    lines.push(`idempotent POSTs: ${x.retries} retries, ${x.gave_up} given up after 90 s; keys answered with two tasks ${x.two_ids}, keys that ran two tasks ${x.ran_twice}`);
  }
  if (rep.delayed) lines.push(`delayed: ${rep.delayed.accepted} accepted, ${rep.delayed.ran_early} ran before their run_at`);
  if (rep.tenant)
    lines.push(`limited tenant: ${rep.tenant.accepted} accepted, at most ${rep.tenant.max_running} running at once (limit ${rep.tenant.concurrency})`);
  if (rep.problems.length) lines.push(`problems (first ${rep.problems.length}):`, ...rep.problems.map((p) => `  ${p}`));
  if (rep.run_dir) lines.push(`run folder (child logs, run records): ${rep.run_dir}`);
  return lines.join("\n");
}

/** Exit code: 1 when anything broke a guarantee. */
export const reportFailed = (rep: ChaosReport) =>
  rep.lost > 0 || rep.max_concurrent_runs > 1 || (rep.tenant !== undefined && rep.tenant.max_running > rep.tenant.concurrency) ||
  (rep.idempotency?.two_ids ?? 0) > 0 || (rep.idempotency?.ran_twice ?? 0) > 0 || (rep.cancellations?.broken ?? 0) > 0 || (rep.delayed?.ran_early ?? 0) > 0 || rep.missing_results > 0 || rep.failed_unexplained > 0 || rep.refused_but_ran > 0;
