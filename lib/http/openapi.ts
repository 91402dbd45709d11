// The OpenAPI document's paths, written from the same schemas and error table the routes use, and
// served by @elysiajs/openapi in place of the ones it would infer. Inferred, it declared form and
// multipart bodies we refuse (415), a plain string id, and none of the 4xx/5xx answers (issue 9).
// Each route lists every status it can answer; tests/schemathesis.test.ts checks the document
// against the running server.
import type { ElysiaOpenAPIConfig } from "@elysiajs/openapi";
import type { Config } from "../config.ts";
import { Accepted, ErrorBody, Replayed, TaskInput, TaskView } from "../model.ts";
import { ERRORS, type ErrorCode } from "./errors.ts";
import { IDEMPOTENCY_KEY_PATTERN } from "./idempotency-key.ts";

/** A TypeBox schema as plain JSON Schema (its symbol keys dropped). */
const plain = (schema: unknown) => JSON.parse(JSON.stringify(schema)) as Record<string, any>;

/** Task ids as the document states them: UUIDs (the pattern stays: it is what the server checks). */
function withUuid(schema: Record<string, any>) {
  if (schema.properties?.task_id) schema.properties.task_id.format = "uuid";
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
              ...json("accepted: the task is queued in Redis and its message is in RocketMQ", withUuid(plain(Accepted)), { ...example, status: "queued" }),
              links: taskLinks,
            },
            ...errors(
              [
                "malformed_json", "invalid_idempotency_key", "unauthorized", "invalid_api_key", "idempotency_conflict", "idempotency_in_progress",
                "content_too_large", "body_too_large", "unsupported_media_type", "invalid_body", "rate_limited", "redis_unavailable", "rocketmq_unavailable",
              ],
              { 401: challenge, 409: maybeRetryAfter, 429: rateLimited, 503: retryAfter },
            ),
          },
        },
      },
      "/tasks/{id}": {
        get: {
          operationId: "getTask",
          summary: "A task's status, result or error, attempts and timestamps",
          parameters: [{ name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } }],
          responses: {
            200: json("the task", withUuid(plain(TaskView))),
            ...errors(["invalid_task_id", "unauthorized", "invalid_api_key", "task_not_found", "redis_unavailable"], { 401: challenge, 503: retryAfter }),
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
