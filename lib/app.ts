// The HTTP API. Every error is JSON that names what was wrong ({error, message, field?}); bad input
// gets a 4xx, an unavailable dependency a 503 with Retry-After, and nothing gets a 500 by design.
import { Elysia, t } from "elysia";
import { openapi } from "@elysiajs/openapi";
import type { Config } from "./config.ts";
import { HttpError, toError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { tcpOpen } from "./net.ts";
import { Accepted, ErrorBody, isTaskId, TaskInput, TaskView, type ErrorBody as ErrorBodyT } from "./model.ts";
import type { TaskStore } from "./store.ts";
import type { TaskService } from "./submit.ts";
import { withTimeout } from "./time.ts";
import { authPlugin, type AuthMode } from "./http/auth.ts";
import { rateLimitPlugin } from "./http/rate-limit.ts";
import type { ApiKeys } from "./tenancy/api-keys.ts";
import type { RateLimiter } from "./tenancy/rate-limit.ts";

export interface AppDeps {
  cfg: Config;
  store: TaskStore;
  tasks: TaskService;
  log: Logger;
  /** API keys and per-tenant rate limits (lib/http/auth.ts); none when absent */
  tenancy?: { auth: AuthMode; apiKeys?: ApiKeys; limiter?: RateLimiter };
}

/** Largest accepted request body: the content limit with room for JSON escaping and the user id. */
export const maxBodyBytes = (cfg: Config) => cfg.MAX_CONTENT_BYTES * 6 + 4_096;

const json = (status: number, body: ErrorBodyT, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/** Whether the first host:port of a RocketMQ endpoint list accepts a TCP connection within `ms`. */
function endpointOpen(endpoint: string, ms: number): Promise<boolean> {
  const first = endpoint.split(";")[0]!.trim();
  const i = first.lastIndexOf(":");
  const host = i > 0 ? first.slice(0, i) : first;
  const port = i > 0 ? Number(first.slice(i + 1)) : 8081;
  return tcpOpen(host, port, ms);
}

function validationBody(error: unknown): ErrorBodyT {
  const all = (error as { all?: { path?: string; message?: string; summary?: string }[] }).all ?? [];
  const first = all[0];
  const field = first?.path?.replace(/^\//, "") || undefined;
  if (!first) return { error: "invalid_body", message: "request body does not match the schema" };
  if (first.path === "" && /object/i.test(first.message ?? ""))
    return { error: "invalid_body", message: "request body must be a JSON object with user_id and content" };
  const what = field ? `${field}: ${first.message}` : (first.message ?? "invalid");
  if (first.message?.includes("Unexpected property"))
    return { error: "invalid_body", message: `unknown field ${field}`, field };
  return { error: "invalid_body", message: what, ...(field ? { field } : {}) };
}

export function createApp({ cfg, store, tasks, log, tenancy }: AppDeps) {
  const maxBody = maxBodyBytes(cfg);
  return new Elysia({ serve: { maxRequestBodySize: maxBody } })
    .use(
      openapi({
        path: "/docs",
        documentation: {
          info: { title: "agent-prod", version: "1.0.0", description: "Asynchronous AI-agent tasks over RocketMQ 5" },
        },
      }),
    )
    .use(authPlugin({ mode: tenancy?.auth ?? "none", apiKeys: tenancy?.apiKeys, store, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .use(rateLimitPlugin({ limiter: tenancy?.limiter, retryAfterSeconds: cfg.RETRY_AFTER_SECONDS }))
    .onRequest(({ request }) => {
      if (request.method !== "POST") return;
      const declared = Number(request.headers.get("content-length") ?? "0");
      if (declared > maxBody)
        return json(413, { error: "body_too_large", message: `request body is ${declared} bytes; the limit is ${maxBody}` });
      const type = request.headers.get("content-type") ?? "";
      if (!/^application\/json\s*(;|$)/i.test(type))
        return json(415, {
          error: "unsupported_media_type",
          message: `content-type must be application/json${type ? `, got ${type}` : " (none was sent)"}`,
        });
    })
    .onError(({ code, error, request }) => {
      if (error instanceof HttpError)
        return json(error.status, { error: error.code, message: error.message }, error.headers);
      switch (code) {
        case "PARSE":
          return json(400, { error: "malformed_json", message: "request body is not valid JSON" });
        case "VALIDATION":
          return json(422, validationBody(error));
        case "NOT_FOUND":
          return json(404, { error: "not_found", message: `no route for ${request.method} ${new URL(request.url).pathname}` });
      }
      const status = (error as { status?: number }).status;
      if (typeof status === "number" && status >= 400 && status < 500)
        return json(status, { error: "bad_request", message: toError(error).message });
      log.error("unhandled error in request", { error: toError(error), path: new URL(request.url).pathname });
      return json(500, { error: "internal", message: "internal error" });
    })
    .post(
      "/tasks",
      async ({ body, set, tenant }) => {
        const bytes = Buffer.byteLength(body.content, "utf8");
        if (bytes > cfg.MAX_CONTENT_BYTES)
          throw new HttpError(413, "content_too_large", `content is ${bytes} bytes; the limit is ${cfg.MAX_CONTENT_BYTES}`);
        if (!body.user_id.trim()) throw new HttpError(422, "invalid_body", "user_id must not be blank");
        const accepted = await tasks.submit(body, tenant);
        set.status = 202;
        return accepted;
      },
      {
        body: TaskInput,
        response: { 202: Accepted, 400: ErrorBody, 401: ErrorBody, 413: ErrorBody, 415: ErrorBody, 422: ErrorBody, 429: ErrorBody, 503: ErrorBody },
        detail: { summary: "Submit a task; answers at once with its id" },
      },
    )
    .get(
      "/tasks/:id",
      async ({ params }) => {
        if (!isTaskId(params.id)) throw new HttpError(400, "invalid_task_id", `task id must be a UUID, got ${JSON.stringify(params.id.slice(0, 64))}`);
        let view;
        try {
          view = await store.get(params.id);
        } catch (e) {
          throw new HttpError(503, "redis_unavailable", "Redis is unavailable; retry later", { "retry-after": String(cfg.RETRY_AFTER_SECONDS) });
        }
        if (!view) throw new HttpError(404, "task_not_found", `no task ${params.id}`);
        return view;
      },
      {
        params: t.Object({ id: t.String() }),
        response: { 200: TaskView, 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 503: ErrorBody },
        detail: { summary: "A task's status, result or error, attempts and timestamps" },
      },
    )
    .get("/healthz", () => ({ status: "ok" }), { detail: { summary: "The process lives" } })
    .get(
      "/readyz",
      async ({ set }) => {
        const [redis, rocketmq] = await Promise.all([
          withTimeout(store.ping(), 1_000, "redis ping").catch(() => false),
          endpointOpen(cfg.MQ_ENDPOINT, 1_000),
        ]);
        const ready = redis && rocketmq;
        if (!ready) set.status = 503;
        return { status: ready ? "ready" : "not_ready", redis: redis ? "ok" : "unavailable", rocketmq: rocketmq ? "ok" : "unavailable" };
      },
      { detail: { summary: "Redis and RocketMQ answer" } },
    );
}
