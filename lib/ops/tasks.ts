// What an operator asks about tasks (scripts/tasks.ts, the dashboard): one task in detail, re-queueing
// a failed one, the dead-letters list and its replay, counts by status.
import { Value } from "@sinclair/typebox/value";
import { RequestMessage, type TaskView } from "../model.ts";
import { scanKeys } from "../redis.ts";
import { send, type Redis } from "../scripts.ts";
import type { DeadLetter, TaskStore } from "../store.ts";
import type { TaskService } from "../submit.ts";
import { hashOf } from "../tenancy/scripts.ts";

/** GET /tasks/:id's view plus the record's operational fields; never the request message itself (user content). */
export interface TaskDetail extends TaskView {
  tenant?: string;
  /** times an operator re-queued it */
  requeued?: number;
  /** whether RocketMQ confirmed its current request message */
  sent?: boolean;
  /** the worker claim's lease end (ISO 8601), while it runs */
  lease_until?: string;
  /** bytes of the request message kept in the record (kept until it finishes; a failed task keeps it to be re-queued) */
  message_bytes?: number;
}

export async function inspectTask(store: TaskStore, id: string): Promise<TaskDetail | null> {
  const view = await store.get(id);
  if (!view) return null;
  const k = store.keys.task(id);
  const h = hashOf(await send(store.redis, k, ["HGETALL", k]));
  const d: TaskDetail = { ...view };
  if (h.tenant) d.tenant = h.tenant;
  if (h.requeued) d.requeued = Number(h.requeued);
  if (h.sent !== undefined) d.sent = h.sent === "1";
  if (h.lease_until && view.status === "running") d.lease_until = new Date(Number(h.lease_until)).toISOString();
  if (h.message) d.message_bytes = Buffer.byteLength(h.message, "utf8");
  return d;
}

export type RetryAnswer =
  | { ok: true; task_id: string; published: boolean }
  | { ok: false; task_id: string; reason: "not_found" | "not_failed" | "no_message" | "already_replayed"; message: string; replayed_at?: string };

/**
 * Re-queues a task that failed for good (or whose message was dead-lettered) and publishes its request
 * message. `body`: a request message to use when the task kept none (a dead-letters entry's).
 */
export async function retryTask(tasks: TaskService, id: string, body?: string, userId?: string): Promise<RetryAnswer> {
  const r = await tasks.requeue(id, body, userId);
  switch (r.kind) {
    case "requeued":
      return { ok: true, task_id: id, published: r.published ?? false };
    case "not_failed":
      return {
        ok: false, task_id: id, reason: "not_failed",
        message: r.status === "failed" ? "its failure result is still being published; try again in a moment"
          : r.status === "rejected" ? "it was never accepted (its client got a 503)"
          : `it is ${r.status}: only a failed task can be retried`,
      };
    case "unknown":
      return { ok: false, task_id: id, reason: "not_found", message: "no such task (expired, or never recorded)" };
    case "replayed":
      return {
        ok: false, task_id: id, reason: "already_replayed", replayed_at: r.at,
        message: `already replayed (re-queued at ${r.at}); its record has expired since, so it is not run again`,
      };
    default:
      return { ok: false, task_id: id, reason: "no_message", message: "its request message was not kept, so it cannot be sent again" };
  }
}

export interface DeadLetterEntry extends DeadLetter {
  /** the task's status now (absent: the entry names no task, or Redis no longer knows it) */
  status?: string;
}

/** The newest `limit` dead letters, each with its task's status now. */
export async function listDeadLetters(store: TaskStore, limit: number): Promise<DeadLetterEntry[]> {
  const entries = await store.deadLetters(limit);
  const views = await Promise.all(entries.map((e) => (e.task_id ? store.get(e.task_id).catch(() => null) : null)));
  return entries.map((e, i) => (views[i] ? { ...e, status: views[i]!.status } : e));
}

/** A dead letter's body as a valid request message, when it is one (it may be cut by DEAD_LETTER_BODY_CHARS, or poison). */
function requestOf(body: string): RequestMessage | undefined {
  try {
    const v: unknown = JSON.parse(body);
    return Value.Check(RequestMessage, v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export type ReplayAnswer = RetryAnswer | { ok: false; task_id?: string; reason: "no_task" | "duplicate" | "too_old"; message: string };

/**
 * Re-publishes the tasks of dead letters: each failed task named by an entry is re-queued with the
 * request message its record kept, else the entry's own body when that is a valid request message.
 * An entry naming no task (a body that was not JSON) cannot be replayed; a task named twice is
 * replayed once. The list itself is left as it is: it is the record of what was set aside and why.
 *
 * A task Redis no longer knows is recorded anew from the entry's body only if it was never re-queued:
 * lib/lua/requeue.lua checks its `replayed` marker, kept DEAD_LETTER_TTL_SECONDS (`ttlSeconds`) plus
 * an hour for the clocks from each re-queue. Every re-queue of an entry's task came after the entry,
 * so while the entry is younger than `ttlSeconds` the marker of any re-queue is still there. An older
 * entry (the list's TTL is renewed by each new entry, so an entry can outlive it) gives no body for
 * an unknown task (`too_old`): whether that task ran again is no longer known.
 */
export async function replayDeadLetters(tasks: TaskService, entries: DeadLetter[], opts: { ttlSeconds: number; now?: number }): Promise<ReplayAnswer[]> {
  const now = opts.now ?? Date.now();
  const young = (e: DeadLetter) => now - Date.parse(e.at) < opts.ttlSeconds * 1_000; // no date: not young
  const seen = new Set<string>();
  const out: ReplayAnswer[] = [];
  for (const e of entries) {
    if (!e.task_id) {
      out.push({ ok: false, reason: "no_task", message: `the entry names no task (${e.reason})` });
      continue;
    }
    if (seen.has(e.task_id)) {
      out.push({ ok: false, task_id: e.task_id, reason: "duplicate", message: "replayed for an earlier entry" });
      continue;
    }
    seen.add(e.task_id);
    const req = requestOf(e.body);
    const usable = req !== undefined && req.task_id === e.task_id;
    const r = await retryTask(tasks, e.task_id, usable && young(e) ? e.body : undefined, req?.user_id);
    if (!r.ok && r.reason === "not_found" && usable && !young(e))
      out.push({
        ok: false, task_id: e.task_id, reason: "too_old",
        message: "no such task, and the entry is older than DEAD_LETTER_TTL_SECONDS: whether it was replayed before is no longer known, so it is not recorded anew",
      });
    else out.push(r);
  }
  return out;
}

export interface StatusCounts {
  counts: Record<string, number>;
  /** task records looked at */
  scanned: number;
  /** false when the scan stopped at `max`: the counts are of the first `max` records found */
  complete: boolean;
}

/**
 * Counts tasks by status by scanning their records (SCAN, on every master of a cluster), stopping at
 * `max`. Per-status counters kept by the transitions would cost nothing to read, but a transition
 * touches only its task's slot (lib/keys.ts): a global counter would be written outside the atomic
 * script and drift with every crash between the two. So the CLI scans with a cap, and the dashboard
 * shows what it can read in O(1) instead (live workers' in-flight, the broker's backlog, per-minute
 * finish counts). SCAN is not in the services' ACL (lib/state/acl.ts): run the CLI as an admin user.
 */
export async function countStatuses(redis: Redis, prefix: string, max: number): Promise<StatusCounts> {
  const glob = prefix.replace(/[*?[\]\\]/g, "\\$&");
  const pattern = `{${glob}task:*:status}:task`;
  const counts: Record<string, number> = {};
  let scanned = 0;
  for await (const batch of scanKeys(redis, pattern, 1_000)) {
    const take = batch.slice(0, max - scanned);
    const statuses = await Promise.all(take.map((k) => send<string | null>(redis, k, ["HGET", k, "status"])));
    for (const s of statuses) if (s && s !== "rejected") counts[s] = (counts[s] ?? 0) + 1;
    scanned += take.length;
    if (scanned >= max) return { counts, scanned, complete: false };
  }
  return { counts, scanned, complete: true };
}
