// Waiting on a task without polling: `GET /tasks/:id?wait=N` (the wait is parsed and run here for the
// GET route of app.ts) and `GET /tasks/:id/events`, Server-Sent Events from the task's events
// (lib/tasks/events.ts), woken by the process's one subscriber (lib/tasks/notices.ts). Tenant rules
// are the GET's: the auth plugin's check of a task's owner runs before these handlers too.
import { Elysia } from "elysia";
import type { Logger } from "../log.ts";
import { HttpError } from "../errors.ts";
import type { TaskView } from "../model.ts";
import type { TaskStore } from "../store.ts";
import { isEventId, isFinal, readEvents, sseFrame, statusFromView, waitForFinal, type TaskEvent } from "../tasks/events.ts";
import { taskNotices } from "../tasks/notices.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { queryOf } from "./request-url.ts";
import { taskIdParam } from "./task-id.ts";

export { isFinal };
export const WAIT_MAX_SECONDS = 60;
/** A comment line this often keeps an idle stream open through proxies (and tells us the client left). */
export const SSE_KEEPALIVE_MS = 15_000;

/** The one value of query parameter `name`, or undefined; a repeated one is refused. */
function single(request: Request, name: string): string | undefined {
  const all = queryOf(request.url).getAll(name);
  if (all.length > 1) throw new ApiError("invalid_parameter", `${name} must be given once, got ${all.length} values`, name);
  return all[0];
}

/** `?wait=N`: whole seconds from 1 to WAIT_MAX_SECONDS, or undefined when absent. */
export function waitSeconds(request: Request): number | undefined {
  const raw = single(request, "wait");
  if (raw === undefined) return undefined;
  const n = /^[0-9]{1,3}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= WAIT_MAX_SECONDS))
    throw new ApiError("invalid_parameter", `wait must be an integer from 1 to ${WAIT_MAX_SECONDS} (seconds), got ${JSON.stringify(raw.slice(0, 64))}`, "wait");
  return n;
}

/**
 * The event to resume after: Last-Event-ID (what EventSource sends), else `?last_event_id=`. Present
 * but empty or not a number is a 400 (a browser never sends an empty one); the header's surrounding
 * blanks are HTTP's, not the value's.
 */
function resumeAfter(request: Request): string | undefined {
  const header = request.headers.get("last-event-id");
  const query = single(request, "last_event_id");
  // Both are checked when both are given; the header wins (EventSource sends it on a reconnection to
  // the URL it was opened with, which may carry an older last_event_id).
  if (query !== undefined && !isEventId(query))
    throw new ApiError("invalid_parameter", `last_event_id must be an event's id (a number), got ${JSON.stringify(query.slice(0, 64))}`, "last_event_id");
  if (header === null) return query;
  const v = header.replace(/^[ \t]+|[ \t]+$/g, "");
  if (!isEventId(v)) throw new ApiError("invalid_parameter", `Last-Event-ID must be an event's id (a number), got ${JSON.stringify(header.slice(0, 64))}`, "Last-Event-ID");
  return v;
}

/** Bun's server, as far as these routes use it: a request's idle timeout (default 10 s). */
type IdleTimeout = { timeout(request: Request, seconds: number): void };

const unavailable = (retryAfterSeconds: number) =>
  new ApiError("redis_unavailable", "Redis is unavailable; retry later", undefined, { "retry-after": String(retryAfterSeconds) });

/** For GET /tasks/:id?wait=N: the task once final, or after N s as it is then. */
export async function waitForTask(
  store: TaskStore, id: string, seconds: number, read: () => Promise<TaskView | null>,
  ctx: { request: Request; server?: IdleTimeout | null; log?: Logger },
): Promise<TaskView | null> {
  // Bun closes a connection idle for 10 s by default: this one is idle on purpose.
  ctx.server?.timeout(ctx.request, seconds + 10);
  return waitForFinal(taskNotices(store.redis, store.keys.eventsChannel, ctx.log), id, seconds * 1000, read, ctx.request.signal);
}

export function taskEventsPlugin(deps: { store: TaskStore; log: Logger; retryAfterSeconds: number }) {
  const { store, log } = deps;
  const read = async (id: string) => {
    try {
      return await store.get(id);
    } catch {
      throw unavailable(deps.retryAfterSeconds);
    }
  };

  return new Elysia({ name: "task-events" }).get(
    "/tasks/:id/events",
    async ({ params, request, server }) => {
      try {
        const id = taskIdParam(params);
        const after = resumeAfter(request);
        const view = await read(id);
        if (!view) throw new ApiError("task_not_found", `no task ${id}`);
        let first: TaskEvent[];
        try {
          first = await readEvents(store, id, after ?? "-");
        } catch {
          throw unavailable(deps.retryAfterSeconds);
        }
        // Resumed after the end: nothing more will come. 204 tells EventSource to stop reconnecting.
        if (after && first.length === 0 && isFinal(view.status)) return new Response(null, { status: 204 });
        server?.timeout(request, 0); // the stream stays open until the task ends
        return new Response(eventStream(store, id, view, after ?? "-", first, request.signal, log), {
          headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" },
        });
      } catch (e) {
        if (e instanceof HttpError) return errorResponse(e);
        throw e;
      }
    },
    { detail: { summary: "The task's events (Server-Sent Events): status per transition, progress per report; ends after the final status" } },
  );
}

/**
 * The SSE body: `first` (already read), then each new batch as notices announce it, until a final
 * status event. A keepalive comment every SSE_KEEPALIVE_MS; then the task record is also looked at,
 * so a task that ended without a final event in its list (finished by the original's workers in
 * a mixed fleet, which write only the status string, or its list trimmed) still ends the stream,
 * with a status event made from the record (no id: there is none to resume from).
 */
function eventStream(store: TaskStore, id: string, view: TaskView, after: string, first: TaskEvent[], signal: AbortSignal, log: Logger): ReadableStream<Uint8Array> {
  const notices = taskNotices(store.redis, store.keys.eventsChannel, log);
  const watch = notices.watch(id);
  const enc = new TextEncoder();
  let last = after;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      // Not awaited: the body flows as events are enqueued, whatever the runtime does with start()'s promise.
      void run(controller);
    },
    cancel() {
      cancelled = true;
      watch.close();
    },
  });

  async function run(controller: ReadableStreamDefaultController<Uint8Array>) {
    const put = (s: string) => {
      if (cancelled) return;
      try {
        controller.enqueue(enc.encode(s));
      } catch {
        cancelled = true; // the client went away meanwhile
      }
    };
    /** Sends events; true once a final status went out. */
    const sendAll = (events: TaskEvent[]) => {
      for (const ev of events) {
        put(sseFrame(ev));
        last = ev.id;
        if (ev.type === "status" && isFinal(ev.status)) return true;
      }
      return false;
    };
    try {
      if (sendAll(first)) return;
      // Registered (watch) and subscribed before this read: nothing written after it goes unnoticed.
      await notices.ready(2_000);
      // Final already, yet not in its events: a task its events never reached (see above).
      let finalInRecord = isFinal(view.status) ? view : undefined;
      let woke: string | undefined;
      for (;;) {
        const batch = await readEvents(store, id, last);
        if (sendAll(batch)) return;
        if (batch.length === 100) continue;
        // Nothing newer although something happened (a notice, or 15 s): the record says whether the
        // task is over. Also for a client resuming after an id the task never reaches. On the first
        // pass too: the task may have ended between the view's read and the watch, and its notice is
        // then gone; without this look the stream would wait for the keepalive (a client with a 10 s
        // read timeout gave up first: schemathesis, CI of 2026-12-01).
        const lookAtRecord = woke === undefined ? batch.length === 0 : woke === "timeout" || (woke === "notice" && batch.length === 0);
        if (lookAtRecord && !finalInRecord) {
          const now = await store.get(id);
          if (!now) return; // expired or removed
          if (isFinal(now.status)) finalInRecord = now;
        }
        if (finalInRecord) {
          put(sseFrame(statusFromView(finalInRecord)));
          return;
        }
        const why = await watch.next(SSE_KEEPALIVE_MS, signal);
        if (why === "aborted" || why === "closed" || cancelled) return;
        if (why === "timeout") put(": keepalive\n\n");
        woke = why;
      }
    } catch (e) {
      // Redis failed mid-stream: end it; the client resumes from the last id it got.
      log.debug("event stream ended by an error", { task_id: id, error: e as Error });
    } finally {
      watch.close();
      if (!cancelled) {
        try {
          controller.close();
        } catch {
          /* the client went away meanwhile */
        }
      }
    }
  }
}
