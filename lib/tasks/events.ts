// A task's events, as the transition scripts write them (lib/lua/include/events.lua): a capped Redis
// list per task of `<n> <type> <data JSON>`, n counting up from 1 (the SSE id). Read here for
// Server-Sent Events and for waiting on a task's end, woken by lib/tasks/notices.ts.
import type { TaskView } from "../model.ts";
import { runScript } from "../scripts.ts";
import type { TaskStore } from "../store.ts";
import type { TaskNotices } from "./notices.ts";

/** Statuses after which nothing happens to a task any more (the other helpers' `canceled` included). */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(["done", "failed", "canceled"]);
export const isFinal = (status: string | undefined) => status !== undefined && FINAL_STATUSES.has(status);

/** An event's number: what SSE sends as `id:` and takes back as Last-Event-ID. */
export const EVENT_ID_PATTERN = "^[0-9]{1,15}$";
export const isEventId = (s: string) => new RegExp(EVENT_ID_PATTERN).test(s);

export interface TaskEvent {
  id: string;
  type: string;
  /** the data, JSON; `at` (ms, Redis's clock) as an ISO 8601 string, like GET's times */
  data: string;
  /** for status events: the status */
  status?: string;
}

/** Events after the one numbered `after` ("-" or "0": from the first kept), oldest first, at most `count`. */
export async function readEvents(store: TaskStore, id: string, after: string, count = 100): Promise<TaskEvent[]> {
  const key = store.keys.events(id);
  const rows = (await runScript(store.redis, "events-read", [key], [after === "-" ? 0 : after, count])) as string[] | null;
  return (rows ?? []).map((row) => {
    const a = row.indexOf(" ");
    const b = row.indexOf(" ", a + 1);
    const ev: TaskEvent = { id: row.slice(0, a), type: row.slice(a + 1, b), data: row.slice(b + 1) };
    try {
      const d = JSON.parse(ev.data) as { status?: string; at?: unknown };
      if (ev.type === "status") ev.status = d.status;
      if (typeof d.at === "number") ev.data = JSON.stringify({ ...d, at: new Date(d.at).toISOString() });
    } catch {
      /* sent as written */
    }
    return ev;
  });
}

/** One event as an SSE frame; `id` left out for one made from the task record (not in the list). */
export function sseFrame(ev: { id?: string; type: string; data: string }): string {
  return `${ev.id ? `id: ${ev.id}\n` : ""}event: ${ev.type}\ndata: ${ev.data.replace(/\n/g, "\ndata: ")}\n\n`;
}

/** A status event built from the task record: for a final task whose events lack it (lib/http/task-events.ts). */
export function statusFromView(view: TaskView): { type: "status"; data: string } {
  const data: Record<string, unknown> = { status: view.status, at: view.finished_at ?? view.updated_at };
  if (view.status === "done") data.result = view.result;
  if (view.error) data.error = view.error;
  return { type: "status", data: JSON.stringify(data) };
}

/**
 * The task once it is final, or after `ms` as it is then (null: unknown or gone). Woken by notices,
 * re-reading the task on each; registered before the first read, so no notice is lost between the
 * read and the wait. `read` is the GET's own read (its errors are the caller's).
 */
export async function waitForFinal(
  notices: TaskNotices, id: string, ms: number, read: () => Promise<TaskView | null>, signal?: AbortSignal,
): Promise<TaskView | null> {
  const deadline = performance.now() + ms;
  const watch = notices.watch(id);
  try {
    await notices.ready(Math.min(ms, 2_000));
    for (;;) {
      const view = await read();
      if (!view || isFinal(view.status)) return view;
      const left = deadline - performance.now();
      if (left <= 0) return view;
      const why = await watch.next(left, signal);
      if (why === "timeout" || why === "aborted" || why === "closed") return read();
    }
  } finally {
    watch.close();
  }
}
