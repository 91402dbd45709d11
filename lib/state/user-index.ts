// One user's tasks, newest first, for GET /tasks. A zset per user (lib/keys.ts userTasks, with its own
// hash tag, so it works on Redis Cluster): task id -> its created_at (ms). It is written as a hint
// right after the task's create (lib/submit.ts), beside the send: another slot than the task, so not
// in the same script; a task whose API process died in between is not listed.
// Capped at USER_TASKS_MAX entries (the oldest trimmed), it expires TASK_TTL_SECONDS +
// MAX_DELAY_SECONDS after its last entry (a delayed task lives its TTL past its due time). A read asks
// each entry's task (TaskStore.get) and drops the entries whose task is gone (expired, or a tombstone).
import type { Config } from "../config.ts";
import type { TaskStatus, TaskView } from "../model.ts";
import { runScript, send } from "../scripts.ts";
import type { TaskStore } from "../store.ts";

/** A position in an index (an entry's score and task id): the next page starts after it. */
export interface Cursor {
  score: number;
  id: string;
}

/**
 * Cursors are `<created ms>_<task id>`. Opaque to clients, but every string of this form is a valid
 * position ("older than this"), so the document's pattern is the whole check.
 */
export const CURSOR_PATTERN = "^[0-9]{1,15}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
const cursorRe = new RegExp(CURSOR_PATTERN);
export const encodeCursor = (c: Cursor) => `${c.score}_${c.id}`;
export function decodeCursor(s: string): Cursor | undefined {
  if (!cursorRe.test(s)) return undefined;
  const i = s.indexOf("_");
  return { score: Number(s.slice(0, i)), id: s.slice(i + 1) };
}

/** Index entries read by one request at most (a status filter may skip many): bounds its cost. */
export const MAX_SCAN = 500;

/** ZRANGE … WITHSCORES as pairs, in RESP2's flat form or RESP3's nested one. */
function pairs(reply: unknown): Cursor[] {
  const a = (reply ?? []) as unknown[];
  const out: Cursor[] = [];
  if (a.length && Array.isArray(a[0])) for (const [id, score] of a as [string, string | number][]) out.push({ id, score: Number(score) });
  else for (let i = 0; i + 1 < a.length; i += 2) out.push({ id: String(a[i]), score: Number(a[i + 1]) });
  return out;
}

export interface PageQuery {
  status?: TaskStatus;
  limit: number;
  /** start after this entry; the newest first when absent */
  after?: Cursor;
}

export class UserIndex {
  constructor(
    private readonly store: TaskStore,
    /** USER_TASKS_MAX */
    readonly cap: number,
    /** the index's TTL after its last entry (s) */
    readonly ttlSeconds: number,
  ) {}

  static fromConfig(store: TaskStore, cfg: Config): UserIndex {
    return new UserIndex(store, cfg.USER_TASKS_MAX, cfg.TASK_TTL_SECONDS + cfg.MAX_DELAY_SECONDS);
  }

  key(tenant: string, userId: string): string {
    return this.store.keys.userTasks(tenant, userId);
  }

  /** Adds the task, created at `createdAt` (ms, its created_at), to its user's index (lib/lua/user-index.lua). */
  async add(tenant: string, userId: string, id: string, createdAt: number): Promise<void> {
    await runScript(this.store.redis, "user-index", [this.key(tenant, userId)], [id, this.ttlSeconds, this.cap, createdAt]);
  }

  /** Up to `n` entries after `after` (from the newest when absent), newest first. */
  async #entries(k: string, after: Cursor | undefined, n: number): Promise<Cursor[]> {
    const redis = this.store.redis;
    const out: Cursor[] = [];
    let max = "+inf";
    if (after) {
      // Entries of the cursor's own ms: Redis orders equal scores by member, so newest first is by id,
      // descending (JavaScript compares these ASCII ids as Redis does, byte by byte).
      const ties = (await send<string[]>(redis, k, ["ZRANGEBYSCORE", k, String(after.score), String(after.score)])) ?? [];
      for (let i = ties.length - 1; i >= 0 && out.length < n; i--) if (ties[i]! < after.id) out.push({ score: after.score, id: ties[i]! });
      max = `(${after.score}`;
    }
    if (out.length < n)
      out.push(...pairs(await send(redis, k, ["ZRANGE", k, max, "-inf", "BYSCORE", "REV", "LIMIT", "0", String(n - out.length), "WITHSCORES"])));
    return out;
  }

  /**
   * One page of the user's tasks, newest first, with the position to continue from (`next`,
   * undefined when nothing follows). With a status filter a page may come back short, after
   * MAX_SCAN entries, with a `next` to continue.
   */
  async page(tenant: string, userId: string, q: PageQuery): Promise<{ tasks: TaskView[]; next?: Cursor }> {
    const k = this.key(tenant, userId);
    const tasks: TaskView[] = [];
    const gone: string[] = [];
    let pos = q.after;
    let scanned = 0;
    let more = true;
    while (tasks.length < q.limit && scanned < MAX_SCAN) {
      const want = Math.min(MAX_SCAN - scanned, q.status ? Math.max(q.limit, 50) : q.limit - tasks.length);
      const batch = await this.#entries(k, pos, want + 1); // one more: does anything follow?
      const take = batch.slice(0, want);
      const views = await Promise.all(take.map((e) => this.store.get(e.id)));
      let i = 0;
      for (; i < take.length && tasks.length < q.limit; i++) {
        const entry = take[i]!;
        const view = views[i];
        pos = entry;
        scanned++;
        // No task: expired, or a tombstone (its client was told 503). Entries are written after the
        // create, so a task never appears later than its entry.
        if (!view) gone.push(entry.id);
        else if (!q.status || view.status === q.status) tasks.push(view);
      }
      if (i === batch.length) {
        more = false; // every entry there is was read
        break;
      }
    }
    if (gone.length) await send(this.store.redis, k, ["ZREM", k, ...gone]).catch(() => {}); // dropped next time then
    return { tasks, next: more ? pos : undefined };
  }
}
