// The HTTP API. Every error is JSON that names what was wrong ({error, message, field?}); bad input
// gets a 4xx, a known path with another method a 405 with Allow, an unavailable dependency a 503
// with Retry-After, and nothing gets a 500 by design. The OpenAPI document (openapi.ts) lists what
// each route answers.
import { Elysia } from "elysia";
import { openapi } from "@elysiajs/openapi";
import type { Config } from "../config.ts";
import { HttpError, toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { tcpOpen } from "../net.ts";
import type { TaskStore } from "../store.ts";
import type { TaskService } from "../submit.ts";
import { withTimeout } from "../time.ts";
import { checkJsonType, maxBodyBytes, parseTaskInput, readCapped } from "./body.ts";
import { ApiError, errorResponse, jsonResponse } from "./errors.ts";
import { openapiDocument } from "./openapi.ts";
import { pathOf } from "./request-url.ts";
import { taskIdParam } from "./task-id.ts";
import { authPlugin, type AuthMode } from "./auth.ts";
import { rateLimitPlugin } from "./rate-limit.ts";
import { dashboardPlugin } from "./dashboard.ts";
import { listRoutes } from "./list.ts";
import { dueAt } from "./schedule.ts";
import { isFinal, taskEventsPlugin, waitForTask, waitSeconds } from "./task-events.ts";
import { observePlugin, traceOfRequest } from "./observe.ts";
import type { ApiKeys } from "../tenancy/api-keys.ts";
import type { RateLimiter } from "../tenancy/rate-limit.ts";
import { CancelService } from "../tasks/cancel.ts";
import { IdempotentSubmit } from "../tasks/idempotency.ts";
import { cancelRoutes } from "./cancel.ts";
import { idempotencyKeyOf } from "./idempotency-key.ts";

export interface AppDeps {
  cfg: Config;
  store: TaskStore;
  tasks: TaskService;
  log: Logger;
  /** API keys and per-tenant rate limits (lib/http/auth.ts); none when absent */
  tenancy?: { auth: AuthMode; apiKeys?: ApiKeys; limiter?: RateLimiter };
}

/**
 * Bun's own request body limit: a backstop far above ours (maxBodyBytes), so a user over our limit
 * gets our JSON 413. Past this one Bun answers an empty 413 with `Connection: close` before any of
 * our code runs (measured with Bun 1.4.4, for a declared Content-Length and for chunked bodies).
 */
export const serverBodyLimit = (cfg: Config) => Math.max(maxBodyBytes(cfg.MAX_CONTENT_BYTES) * 4, 256 * 1024 * 1024);

/** Whether the first host:port of a RocketMQ endpoint list accepts a TCP connection within `ms`. */
function endpointOpen(endpoint: string, ms: number): Promise<boolean> {
  const first = endpoint.split(";")[0]!.trim();
  const i = first.lastIndexOf(":");
  const host = i > 0 ? first.slice(0, i) : first;
  const port = i > 0 ? Number(first.slice(i + 1)) : 8081;
  return tcpOpen(host, port, ms);
}

/** Does a route path (`/tasks/:id`) match a request path? Trailing slashes are ignored, as Elysia does. */
function matches(route: string, path: string): boolean {
  const a = route.replace(/\/+$/, "").split("/");
  const b = path.replace(/\/+$/, "").split("/");
  if (a.at(-1) === "*") return b.length >= a.length - 1 && a.slice(0, -1).every((s, i) => s === b[i]);
  return a.length === b.length && a.every((s, i) => s === b[i] || (s.startsWith(":") && b[i] !== ""));
}

export function createApp({ cfg, store, tasks, log, tenancy }: AppDeps) {
  const maxBody = maxBodyBytes(cfg.MAX_CONTENT_BYTES);
  const doc = openapiDocument(cfg);
  const app = new Elysia({ serve: { maxRequestBodySize: serverBodyLimit(cfg) } });
  const once = new IdempotentSubmit(cfg, store, tasks, log);

  /** The methods routed for a path, for a 405's Allow header (HEAD comes with GET). */
  const allowed = (path: string) => {
    const methods = new Set(app.routes.filter((r) => matches(r.path, path)).map((r) => r.method.toUpperCase()));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };

  /** The JSON answer to an error thrown while routing or handling a request. */
  const errorAnswer = (code: string | number, error: unknown, request: Request): Response => {
    if (error instanceof HttpError) return errorResponse(error);
    // pathOf, not new URL(): request.url is a bare path when the Host header is missing or bad
    // (lib/http/request-url.ts).
    const pathname = pathOf(request.url);
    const path = pathname.slice(0, 200);
    switch (code) {
      case "NOT_FOUND": {
        const allow = allowed(pathname);
        if (allow.length)
          return jsonResponse(
            405,
            { error: "method_not_allowed", message: `${request.method} is not allowed on ${path}; allowed: ${allow.join(", ")}` },
            { allow: allow.join(", ") },
          );
        return jsonResponse(404, { error: "not_found", message: `no route for ${request.method} ${path}` });
      }
      case "PARSE":
        return jsonResponse(400, { error: "malformed_json", message: "request body is not valid JSON" });
    }
    const status = (error as { status?: unknown } | null | undefined)?.status; // anything can be thrown, undefined too
    if (typeof status === "number" && status >= 400 && status < 500)
      return jsonResponse(status, { error: "bad_request", message: toError(error).message });
    log.error("unhandled error in request", { error: toError(error), path });
    return jsonResponse(500, { error: "internal", message: "internal error" });
  };

  return app
    .use(openapi({ path: "/docs", documentation: doc }))
    .use(authPlugin({ mode: tenancy?.auth ?? "none", apiKeys: tenancy?.apiKeys, store, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .use(rateLimitPlugin({ limiter: tenancy?.limiter, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .use(observePlugin(cfg))
    .onError(({ code, error, request }) => {
      // Never throws: a throw here would reach the client as Bun's own 500, an HTML page with a stack
      // and file paths in development mode.
      try {
        return errorAnswer(code, error, request);
      } catch (e) {
        try {
          log.error("error handler failed", { error: toError(e) });
        } catch {
          /* the answer matters more than the log line */
        }
        return jsonResponse(500, { error: "internal", message: "internal error" });
      }
    })
    .use(dashboardPlugin({ cfg, store, tasks, log }))
    .post(
      "/tasks",
      // The body is read here, not by Elysia: with a cap (readCapped), and checked by parseTaskInput.
      async ({ request, set, tenant }) => {
        const key = idempotencyKeyOf(request);
        checkJsonType(request);
        const input = parseTaskInput(await readCapped(request, maxBody), cfg.MAX_CONTENT_BYTES);
        // With an Idempotency-Key: one task per (tenant, user, key); a repeat replays it (lib/tasks/idempotency.ts).
        const runAt = dueAt(input, Date.now(), cfg.MAX_DELAY_SECONDS);
        const trace = traceOfRequest(request); // the `submit` span (lib/http/observe.ts), parent of the send's
        const r = key ? await once.submit(key, input, tenant, runAt, trace) : undefined;
        if (r?.replayed) {
          set.headers["idempotent-replayed"] = "true";
          return r.body;
        }
        const accepted = r?.body ?? (await tasks.submit(input, tenant, { runAt, trace }));
        set.status = 202;
        return accepted;
      },
      { detail: { summary: "Submit a task; answers at once with its id" } },
    )
    .use(listRoutes({ index: tasks.index, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .get(
      "/tasks/:id",
      async ({ params, request, server }) => {
        const id = taskIdParam(params);
        const wait = waitSeconds(request);
        const read = async () => {
          try {
            return await store.get(id);
          } catch (e) {
            throw new ApiError("redis_unavailable", "Redis is unavailable; retry later", undefined, { "retry-after": String(cfg.RETRY_AFTER_SECONDS) });
          }
        };
        let view = await read();
        // ?wait=N: answered once the task is final, or after N s as it is then (lib/http/task-events.ts).
        if (view && wait && !isFinal(view.status)) view = await waitForTask(store, id, wait, read, { request, server, log });
        if (!view) throw new ApiError("task_not_found", `no task ${id}`);
        return view;
      },
      { detail: { summary: "A task's status, result or error, attempts and timestamps" } },
    )
    .use(cancelRoutes({ cfg, cancel: new CancelService(cfg, store, tasks.publisher, log) }))
    .use(taskEventsPlugin({ store, log, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .get("/healthz", () => ({ status: "ok" }), { detail: { summary: "The process lives" } })
    .get(
      "/readyz",
      async ({ set }) => {
        const [redis, rocketmq] = await Promise.all([
          withTimeout(store.ping(), 1_000, "redis ping").catch(() => false),
          endpointOpen(cfg.MQ_ENDPOINT, 1_000),
        ]);
        const body = { status: "ready", redis: redis ? "ok" : "unavailable", rocketmq: rocketmq ? "ok" : "unavailable" };
        if (redis && rocketmq) return body;
        set.status = 503;
        const down = [redis ? "" : "Redis", rocketmq ? "" : "RocketMQ"].filter(Boolean).join(" and ");
        return { ...body, status: "not_ready", error: "not_ready", message: `${down} ${down.includes(" and ") ? "are" : "is"} unavailable` };
      },
      { detail: { summary: "Redis and RocketMQ answer" } },
    );
}
