// Operator CLI: `bun scripts/tasks.ts <command>` (README, "Operations"; docs/operations.md).
//   inspect ID                          one task: status, attempts, error, times, usage, result summary
//   retry ID                            re-queue a failed (or dead-lettered) task and send its message again
//   dead-letters [--replay] [--limit N] the dead-letters list, newest first; --replay re-queues their tasks
//   stats [--max N]                     counts by status (a capped scan), last hour, backlog, live workers
// --json prints one JSON document instead. Exit codes: 0 ok, 1 not found / nothing to do, 2 usage,
// 3 Redis or RocketMQ unreachable. Reads the same variables as the services (REDIS_*, MQ_*).
import { parseArgs } from "node:util";
import { loadConfig, type Config } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { isTaskId, TaskStatus } from "../lib/model.ts";
import { Publisher } from "../lib/mq.ts";
import { closeRedis, type Redis } from "../lib/redis.ts";
import { send } from "../lib/scripts.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { adminFor, readBacklog } from "../lib/ops/backlog.ts";
import { cliRedis, closeWithin, connect, EXIT, failureLine, Unreachable, visible } from "../lib/ops/cli.ts";
import { latencyText, readWindow, type Percentile, type Percentiles } from "../lib/ops/minutes.ts";
import { countStatuses, inspectTask, listDeadLetters, replayDeadLetters, retryTask } from "../lib/ops/tasks.ts";
import { liveWorkers } from "../lib/ops/workers.ts";

const USAGE = `usage: bun scripts/tasks.ts inspect TASK_ID [--json]
       bun scripts/tasks.ts retry TASK_ID [--json]
       bun scripts/tasks.ts dead-letters [--replay] [--limit N] [--json]
       bun scripts/tasks.ts stats [--max N] [--json]
  inspect       one task: status, attempts, error, times, usage, result
  retry         re-queue a failed (or dead-lettered) task and send its request message again
  dead-letters  messages set aside, newest first (default --limit 20); --replay re-queues their failed tasks
  stats         counts by status (scans at most --max task records, default 100000), the last hour's
                finishes and latency, the workers' backlog in RocketMQ, live workers
exit codes: 0 ok, 1 not found or nothing to do, 2 usage, 3 Redis or RocketMQ unreachable`;

function usage(problem?: string): never {
  if (problem) console.error(`${problem}\n${USAGE}`);
  else console.log(USAGE);
  process.exit(problem ? EXIT.usage : EXIT.ok);
}

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        json: { type: "boolean" },
        replay: { type: "boolean" },
        limit: { type: "string" },
        max: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
}

function positiveInt(name: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a whole number >= 1, got ${JSON.stringify(raw)}`);
  return n;
}

const ago = (iso?: string) => {
  if (!iso) return "";
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? ` (${s} s ago)` : s < 7200 ? ` (${Math.round(s / 60)} min ago)` : ` (${Math.round(s / 3600)} h ago)`;
};
/** A template whose every interpolated value goes through visible() (lib/ops/cli.ts); the literal text is ours. */
const h = (text: TemplateStringsArray, ...values: unknown[]) => text.reduce((out, t, i) => out + visible(values[i - 1]) + t);
/** Every status a task can have, in the order of its life (stats shows each, 0 included). */
const STATUSES = TaskStatus.anyOf.map((s) => s.const as string);

/** A latency percentile: "<= 2.5 s", or "> 600 s" above the last histogram bucket. */
const ms = (p: Percentiles, k: Percentile) => latencyText(p, k, { le: "<= ", gt: "> " });

async function main() {
  const { values, positionals } = parse();
  const [command, arg, extra] = positionals;
  if (values.help) usage();
  if (!command) usage("a command is needed");
  if (!["inspect", "retry", "dead-letters", "stats"].includes(command)) usage(`unknown command ${JSON.stringify(command)}`);
  if ((command === "inspect" || command === "retry") && (!arg || !isTaskId(arg))) usage(`${command} needs a task id (a UUID)${arg ? `, got ${JSON.stringify(arg)}` : ""}`);
  if ((command === "inspect" || command === "retry") ? extra !== undefined : arg !== undefined) usage(`unexpected argument ${JSON.stringify(extra ?? arg)}`);
  if (values.replay && command !== "dead-letters") usage("--replay goes with dead-letters");
  if (values.limit !== undefined && command !== "dead-letters") usage("--limit goes with dead-letters");
  if (values.max !== undefined && command !== "stats") usage("--max goes with stats");
  const limit = positiveInt("limit", values.limit, 20);
  const max = positiveInt("max", values.max, 100_000);
  const json = Boolean(values.json);

  const cfg = loadConfig();
  const redis = cliRedis(cfg);
  let publisher: Publisher | undefined;
  try {
    await connect(redis, cfg);
    const store = TaskStore.fromConfig(redis, cfg);
    const out = (human: string, doc: unknown) => console.log(json ? JSON.stringify(doc, null, 2) : human);
    /** A publisher, started before anything is written: RocketMQ down means nothing changes. */
    const tasks = async () => {
      publisher = new Publisher(cfg, silentLogger, [cfg.MQ_TOPIC_REQUEST]);
      await publisher.start().catch((e) => {
        throw new Unreachable(`RocketMQ is not reachable (MQ_ENDPOINT ${cfg.MQ_ENDPOINT}): ${(e as Error).message}; nothing was changed`);
      });
      return new TaskService(cfg, store, publisher, silentLogger);
    };

    if (command === "inspect") {
      const d = await inspectTask(store, arg!);
      if (!d) {
        out(h`no task ${arg}`, { error: "task_not_found", task_id: arg });
        return EXIT.nothing;
      }
      const lines = [
        h`task      ${d.task_id}`,
        h`status    ${d.status}`,
        h`user_id   ${d.user_id ?? "-"}` + (d.tenant ? h`   tenant ${d.tenant}` : ""),
        h`attempts  ${d.attempts}${d.requeued ? `   re-queued by an operator ${d.requeued}x` : ""}`,
        h`created   ${d.created_at ?? "-"}${ago(d.created_at)}`,
        h`started   ${d.started_at ?? "-"}${ago(d.started_at)}`,
        h`finished  ${d.finished_at ?? "-"}${ago(d.finished_at)}`,
        h`updated   ${d.updated_at ?? "-"}${ago(d.updated_at)}`,
      ];
      if (d.lease_until) lines.push(h`lease     until ${d.lease_until}`);
      if (d.sent === false) lines.push("message   not yet confirmed by RocketMQ (the outbox sweeper sends it)");
      if (d.error) lines.push(h`error     ${d.error}`);
      if (d.usage)
        lines.push(h`usage     ${d.usage.model}: ${d.usage.prompt_tokens} prompt + ${d.usage.completion_tokens} completion tokens, ` +
          h`${d.usage.llm_ms} ms in LLM calls over ${d.usage.attempts} attempt(s)`);
      // JSON.stringify escapes C0 controls only: visible() the rest (DEL, C1, bidi).
      if (d.result) lines.push(h`result    score ${d.result.score}, tags ${JSON.stringify(d.result.tags)}, reason ${JSON.stringify(d.result.reason.slice(0, 200))}`);
      out(lines.join("\n"), d);
      return EXIT.ok;
    }

    if (command === "retry") {
      const r = await retryTask(await tasks(), arg!);
      if (!r.ok) {
        out(h`not retried: ${r.message}`, r);
        return EXIT.nothing;
      }
      out(r.published ? h`task ${arg} re-queued and its message sent` : h`task ${arg} re-queued; its message was not confirmed, the API's outbox sweeper sends it`, r);
      return EXIT.ok;
    }

    if (command === "dead-letters") {
      const entries = await listDeadLetters(store, limit);
      if (!values.replay) {
        const lines = entries.map((e) => h`${e.at}  ${e.task_id ?? "(no task id)"}  ${e.status ?? "-"}\n    ${e.reason}`);
        out(entries.length ? lines.join("\n") : "no dead letters", entries);
        return EXIT.ok;
      }
      const replayable = entries.filter((e) => e.status === "failed" || (e.task_id && !e.status));
      // An entry whose task Redis no longer knows is tried too: recorded anew from the entry's body
      // unless it was re-queued before (its `replayed` marker, lib/lua/requeue.lua), then skipped.
      const answers = await replayDeadLetters(await tasks(), replayable, { ttlSeconds: cfg.DEAD_LETTER_TTL_SECONDS });
      const replayed = answers.filter((a) => a.ok).length;
      const already = answers.filter((a) => !a.ok && a.reason === "already_replayed").length;
      const lines = answers.map((a) => h`${a.task_id ?? "(no task id)"}  ` + (a.ok ? "re-queued" : h`skipped: ${a.message}`));
      const notes = [
        ...(entries.length - replayable.length ? [`${entries.length - replayable.length} not failed any more`] : []),
        ...(already ? [`${already} already replayed`] : []),
      ];
      lines.push(`${replayed} of ${entries.length} dead letter(s) replayed${notes.length ? ` (${notes.join(", ")}: skipped)` : ""}`);
      out(lines.join("\n"), { replayed, already_replayed: already, entries: entries.length, answers });
      return replayed > 0 ? EXIT.ok : EXIT.nothing;
    }

    // stats
    const stats = await collectStats(cfg, redis, store, max);
    const c = stats.statuses;
    const lines = [
      `tasks by status${c.complete ? "" : ` (the first ${c.scanned} records found; --max to look at more)`}:`,
      // Every status --json can count (scheduled and canceled too), and any other a record holds.
      ...[...new Set([...STATUSES, ...Object.keys(c.counts)])].map((s) => h`  ${s.padEnd(9)} ${c.counts[s] ?? 0}`),
      `last hour: ${stats.hour.done} done, ${stats.hour.failed} failed, ${stats.hour.retry} retried; end to end p50 ${ms(stats.hour.e2e, "p50")}, p95 ${ms(stats.hour.e2e, "p95")}, p99 ${ms(stats.hour.e2e, "p99")}`,
      `backlog in RocketMQ: ${stats.backlog === null ? h`unknown (${stats.backlog_error})` : `${stats.backlog} message(s) no worker has received`}`,
      `dead letters: ${stats.dead_letters}`,
      `live workers: ${stats.workers.length}`,
      ...stats.workers.map((w) => h`  ${w.id}  in flight ${w.in_flight}/${w.capacity}  finished ${w.finished}  up since ${w.started}`),
    ];
    out(lines.join("\n"), stats);
    return EXIT.ok;
  } catch (e) {
    console.error(failureLine(e, "Redis or RocketMQ"));
    return EXIT.unreachable;
  } finally {
    await closeWithin([publisher?.close(), closeRedis(redis)]);
  }
}

async function collectStats(cfg: Config, redis: Redis, store: TaskStore, max: number) {
  const admin = adminFor(cfg);
  try {
    const [statuses, win, workers, dead, backlog] = await Promise.all([
      countStatuses(redis, cfg.REDIS_PREFIX, max),
      readWindow(redis, store.keys, 60),
      liveWorkers(redis, store.keys),
      send<number>(redis, store.keys.deadLetters, ["LLEN", store.keys.deadLetters]),
      readBacklog(admin, cfg.MQ_TOPIC_REQUEST, cfg.MQ_GROUP_AGENT).then(
        (b) => ({ n: b.messages as number | null, error: undefined as string | undefined }),
        (e) => ({ n: null, error: (e as Error).message }),
      ),
    ]);
    const { minutes: _minutes, ...hour } = win;
    return { statuses, hour, backlog: backlog.n, ...(backlog.error ? { backlog_error: backlog.error } : {}), dead_letters: Number(dead), workers };
  } finally {
    admin.close();
  }
}

process.exit(await main());
