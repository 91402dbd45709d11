// The OpenAPI document's paths, written from the same schemas and error table the routes use, and
// served by @elysiajs/openapi in place of the ones it would infer. Inferred, it declared form and
// multipart bodies we refuse (415), a plain string id, and none of the 4xx/5xx answers (issue 9).
// Each route lists every status it can answer; tests/schemathesis.test.ts checks the document
// against the running server.
import type { ElysiaOpenAPIConfig } from "@elysiajs/openapi";
import type { Config } from "../config.ts";
import { Accepted, ErrorBody, Replayed, TaskInput, TaskPage, TaskView, USER_ID_MAX, USER_ID_PATTERN } from "../model.ts";
import { CURSOR_PATTERN } from "../state/user-index.ts";
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from "./list.ts";
import { ERRORS, type ErrorCode } from "./errors.ts";
import { IDEMPOTENCY_KEY_PATTERN } from "./idempotency-key.ts";
import { WAIT_MAX_SECONDS } from "./task-events.ts";
import { EVENT_ID_PATTERN } from "../tasks/events.ts";

/** A TypeBox schema as plain JSON Schema (its symbol keys dropped). */
const plain = (schema: unknown) => JSON.parse(JSON.stringify(schema)) as Record<string, any>;

/** Task ids as the document states them: UUIDs (the pattern stays: it is what the server checks). */
function withUuid(schema: Record<string, any>) {
  if (schema.properties?.task_id) schema.properties.task_id.format = "uuid";
  return schema;
}
/** The same for the tasks of a page. */
function withUuidItems(schema: Record<string, any>) {
  withUuid(schema.properties.tasks.items);
  return schema;
}

const retryAfter = {
  "Retry-After": { description: "seconds to wait before retrying", required: true, schema: { type: "integer", minimum: 1 } },
};

// API keys (AUTH_MODE=keys, or auto off loopback) and per-tenant rate limits (lib/http/auth.ts,
// rate-limit.ts): documented on the routes that answer them even when a loopback API never does.
const challenge = {
  "WWW-Authenticate": { description: "Bearer realm=\"agent-prod\"", required: true, schema: { type: "string" } },
};
// Idempotency-Key (lib/tasks/idempotency.ts): a replay is a 200 with this header.
const idempotencyKey = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "one task per key for this user (and tenant): a repeat with the same body replays it (200), another body is a 409",
  schema: { type: "string", minLength: 1, maxLength: 255, pattern: IDEMPOTENCY_KEY_PATTERN },
};
const replayedHeader = {
  "Idempotent-Replayed": { description: "true: the answer names the task of an earlier request with this Idempotency-Key", required: true, schema: { type: "string", enum: ["true"] } },
};
const maybeRetryAfter = { "Retry-After": { ...retryAfter["Retry-After"], required: false, description: "with idempotency_in_progress: seconds to wait" } };
const rateLimited = {
  ...retryAfter,
  "RateLimit-Limit": { description: "the tenant's burst (draft-ietf-httpapi-ratelimit-headers-06)", schema: { type: "integer" } },
  "RateLimit-Remaining": { description: "whole requests left in the bucket", schema: { type: "integer" } },
  "RateLimit-Reset": { description: "seconds until the bucket is full again", schema: { type: "integer" } },
  "RateLimit-Policy": { description: "<burst>;w=<seconds to refill it>", schema: { type: "string" } },
};

/** The responses for a list of error codes, grouped by status, each code an example. */
function errors(codes: ErrorCode[], headers: Partial<Record<number, object>> = {}) {
  const out: Record<string, object> = {};
  const byStatus = new Map<number, ErrorCode[]>();
  for (const c of codes) byStatus.set(ERRORS[c].status, [...(byStatus.get(ERRORS[c].status) ?? []), c]);
  for (const [status, list] of byStatus) {
    const examples = Object.fromEntries(
      list.map((c) => {
        const e = ERRORS[c] as { message: string; field?: string };
        return [c, { value: { error: c, message: e.message, ...(e.field ? { field: e.field } : {}) } }];
      }),
    );
    out[String(status)] = {
      description: list.join(" or "),
      ...(headers[status] ? { headers: headers[status] } : {}),
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" }, examples } },
    };
  }
  return out;
}

const taskIdParam = { name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } };

const json = (description: string, schema: object, example?: unknown) => ({
  description,
  content: { "application/json": { schema, ...(example !== undefined ? { example } : {}) } },
});

type Documentation = NonNullable<ElysiaOpenAPIConfig["documentation"]>;

/** From a POST /tasks answer to the task: GET it, cancel it. */
const taskLinks = {
  GetTask: { operationId: "getTask", parameters: { id: "$response.body#/task_id" } },
  CancelTask: { operationId: "cancelTask", parameters: { id: "$response.body#/task_id" } },
};

export function openapiDocument(cfg: Config): Documentation {
  const input = plain(TaskInput);
  // JSON Schema cannot count UTF-8 bytes: maxLength in characters is the bound for ASCII content.
  input.properties.content.maxLength = cfg.MAX_CONTENT_BYTES;
  input.properties.content.description = `text the agent works on: at most ${cfg.MAX_CONTENT_BYTES} bytes in UTF-8 (413 content_too_large past it)`;
  // Delayed tasks (lib/http/schedule.ts): the limit as a maximum for delay_ms; for run_at no schema
  // can say "within MAX_DELAY_SECONDS from now", so its description does (422 delay_too_long).
  input.properties.delay_ms.maximum = cfg.MAX_DELAY_SECONDS * 1000;
  input.properties.delay_ms.description = `run the task this many ms from now (0: at once); at most ${cfg.MAX_DELAY_SECONDS * 1000} (MAX_DELAY_SECONDS). Not with run_at (400 conflicting_fields)`;
  input.properties.run_at.description =
    `run the task at this time (RFC 3339); in the past: at once; more than ${cfg.MAX_DELAY_SECONDS} s ahead: 422 delay_too_long. Not with delay_ms (400 conflicting_fields)`;
  input.not = { required: ["delay_ms", "run_at"] };
  const listParams = [
    { name: "user_id", in: "query", required: true, schema: { type: "string", minLength: 1, maxLength: USER_ID_MAX, pattern: USER_ID_PATTERN }, description: "whose tasks (with API keys: a user of the key's tenant)" },
    { name: "status", in: "query", required: false, schema: { type: "string", enum: plain(TaskView).properties.status.anyOf.map((s: { const: string }) => s.const) }, description: "only tasks in this status" },
    { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: LIST_LIMIT_MAX, default: LIST_LIMIT_DEFAULT }, description: "tasks per page" },
    { name: "cursor", in: "query", required: false, schema: { type: "string", pattern: CURSOR_PATTERN }, description: "the previous page's next_cursor, unchanged" },
  ];
  const example = { task_id: "3f0c2a4e-8b1d-4c55-9a0e-2f1b7c9d4e61" };
  const readiness = {
    type: "object",
    required: ["status", "redis", "rocketmq"],
    properties: {
      status: { type: "string", enum: ["ready", "not_ready"] },
      redis: { type: "string", enum: ["ok", "unavailable"] },
      rocketmq: { type: "string", enum: ["ok", "unavailable"] },
      error: { type: "string", description: "not_ready, on a 503" },
      message: { type: "string", description: "what is unavailable, on a 503" },
    },
  };

  // Plain JSON Schema objects, which the OpenAPI types spell with literal unions: checked by schemathesis instead.
  return <Documentation>(<unknown>{
    info: { title: "agent-prod", version: "1.0.0", description: "Asynchronous AI-agent tasks over RocketMQ 5. Every error is JSON {error, message, field?}." },
    components: { schemas: { Error: plain(ErrorBody) } },
    paths: {
      "/tasks": {
        post: {
          operationId: "createTask",
          summary: "Submit a task; answers at once with its id",
          parameters: [idempotencyKey],
          requestBody: { required: true, content: { "application/json": { schema: input, example: { user_id: "user123", content: "机械键盘降价了" } } } },
          responses: {
            200: {
              ...json("replayed: this Idempotency-Key was used with the same body; the first task, as it is now", withUuid(plain(Replayed)), { ...example, status: "running" }),
              headers: replayedHeader,
              links: taskLinks,
            },
            202: {
              ...json("accepted: the task is queued (or scheduled, when delayed) in Redis and its message is in RocketMQ", withUuid(plain(Accepted)), { ...example, status: "queued" }),
              links: taskLinks,
            },
            ...errors(
              [
                "malformed_json", "conflicting_fields", "invalid_idempotency_key", "unauthorized", "invalid_api_key", "idempotency_conflict", "idempotency_in_progress",
                "content_too_large", "body_too_large", "unsupported_media_type", "invalid_body", "delay_too_long", "rate_limited", "redis_unavailable", "rocketmq_unavailable",
              ],
              { 401: challenge, 409: maybeRetryAfter, 429: rateLimited, 503: retryAfter },
            ),
          },
        },
        get: {
          operationId: "listTasks",
          summary: "One user's tasks, newest first, a page at a time",
          parameters: listParams,
          responses: {
            200: json("a page of tasks; next_cursor null when nothing follows", withUuidItems(plain(TaskPage)), { tasks: [], next_cursor: null }),
            ...errors(["invalid_query", "unauthorized", "invalid_api_key", "redis_unavailable"], { 401: challenge, 503: retryAfter }),
          },
        },
      },
      "/tasks/{id}": {
        get: {
          operationId: "getTask",
          summary: "A task's status, result or error, attempts, timestamps and latest progress",
          parameters: [
            taskIdParam,
            {
              name: "wait", in: "query", required: false,
              description: "answer once the task is final (done, failed), or after this many seconds with its state then; no polling: woken by the task's events",
              schema: { type: "integer", minimum: 1, maximum: WAIT_MAX_SECONDS },
            },
          ],
          responses: {
            200: json("the task", withUuid(plain(TaskView))),
            ...errors(["invalid_task_id", "invalid_parameter", "unauthorized", "invalid_api_key", "task_not_found", "redis_unavailable"], { 401: challenge, 503: retryAfter }),
          },
        },
      },
      "/tasks/{id}/events": {
        get: {
          operationId: "getTaskEvents",
          summary: "The task's events as Server-Sent Events; the stream ends after the final status",
          description:
            "One `status` event per transition (data: {status, at, attempt?, error?, result?}) and one `progress` event per " +
            "progress report written (data: {pct?, message?, partial?}), JSON, each with `id:` (its number, counting up from 1). " +
            "Resume with Last-Event-ID (or ?last_event_id= where the header cannot be set): the events after it, none lost. " +
            "A comment line every 15 s keeps an idle stream open.",
          parameters: [
            taskIdParam,
            {
              name: "Last-Event-ID", in: "header", required: false, description: "resume after this event",
              // blanks around a header value are HTTP's (RFC 9110 OWS), dropped before the value is read
              schema: { type: "string", pattern: "^[ \t]*[0-9]{1,15}[ \t]*$" },
            },
            { name: "last_event_id", in: "query", required: false, description: "resume after this event (for clients that cannot set the header; the header wins)", schema: { type: "string", pattern: EVENT_ID_PATTERN } },
          ],
          responses: {
            200: {
              description: "the events so far, then each as it happens, until the final status",
              content: {
                "text/event-stream": {
                  // One event (OpenAPI 3.0/3.1: the schema of each event, as OpenAPI 3.2's itemSchema).
                  schema: {
                    type: "object",
                    required: ["event", "data"],
                    properties: {
                      event: { type: "string", enum: ["status", "progress"] },
                      id: { type: "string", pattern: EVENT_ID_PATTERN, description: "its number; absent on a status made from the task record" },
                      data: { type: "string", contentMediaType: "application/json", description: "status: {status, at, attempt?, error?, result?}; progress: {at, pct?, message?, partial?}" },
                    },
                  },
                  example: 'id: 1\nevent: status\ndata: {"status":"queued","at":"2026-12-01T03:00:00.000Z"}\n\n',
                },
              },
            },
            204: { description: "resumed after the final status: nothing more will come (EventSource stops reconnecting)" },
            ...errors(["invalid_task_id", "invalid_parameter", "unauthorized", "invalid_api_key", "task_not_found", "redis_unavailable"], { 401: challenge, 503: retryAfter }),
          },
        },
      },
      "/tasks/{id}/cancel": {
        post: {
          operationId: "cancelTask",
          summary: "Cancel a task: at once if it has not started (canceled), within about a second if it runs (running, then canceled)",
          description: "No body and no content type needed. Every cancellation publishes a result message with status canceled.",
          parameters: [{ name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } }],
          responses: {
            202: json("cancellation accepted: the task as it is now (canceled, or running while its worker aborts it)", withUuid(plain(TaskView))),
            ...errors(["invalid_task_id", "unauthorized", "invalid_api_key", "task_not_found", "already_finished", "redis_unavailable"], { 401: challenge, 503: retryAfter }),
          },
        },
      },
      "/healthz": {
        get: {
          operationId: "healthz",
          summary: "The process lives",
          responses: { 200: json("alive", { type: "object", required: ["status"], properties: { status: { const: "ok" } } }, { status: "ok" }) },
        },
      },
      "/readyz": {
        get: {
          operationId: "readyz",
          summary: "Redis and RocketMQ answer",
          responses: {
            200: json("both answer", readiness, { status: "ready", redis: "ok", rocketmq: "ok" }),
            503: json("one does not", { ...readiness, required: [...readiness.required, "error", "message"] }, {
              status: "not_ready", redis: "ok", rocketmq: "unavailable", error: "not_ready", message: "RocketMQ is unavailable",
            }),
          },
        },
      },
    },
  });
}
