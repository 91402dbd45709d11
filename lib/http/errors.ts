// Every error the HTTP API answers, in one table: its status and an example. The routes throw
// HttpError with these codes, and the OpenAPI document (openapi.ts) lists, per route, the codes that
// route can answer, so the document cannot name an error the code does not have.
import { HttpError } from "../errors.ts";
import type { ErrorBody } from "../model.ts";

export const ERRORS = {
  malformed_json: { status: 400, message: "request body is not valid JSON" },
  invalid_task_id: { status: 400, message: 'task id must be a UUID, got "0"' },
  invalid_idempotency_key: { status: 400, message: "Idempotency-Key must be 1 to 255 printable ASCII characters, without leading or trailing spaces", field: "Idempotency-Key" },
  conflicting_fields: { status: 400, message: "run_at: give delay_ms or run_at, not both", field: "run_at" },
  invalid_query: { status: 400, message: "limit: an integer from 1 to 100, got \"0\"", field: "limit" },
  invalid_parameter: { status: 400, message: 'wait must be an integer from 1 to 60 (seconds), got "0"', field: "wait" },
  unauthorized: { status: 401, message: "an API key is required: Authorization: Bearer <key>" },
  invalid_api_key: { status: 401, message: "the API key is unknown or revoked" },
  task_not_found: { status: 404, message: "no task 3f0c2a4e-8b1d-4c55-9a0e-2f1b7c9d4e61" },
  not_found: { status: 404, message: "no route for GET /nope" },
  method_not_allowed: { status: 405, message: "PUT is not allowed on /tasks; allowed: GET, HEAD, POST" },
  already_finished: { status: 409, message: "task 3f0c2a4e-8b1d-4c55-9a0e-2f1b7c9d4e61 is already done" },
  idempotency_conflict: { status: 409, message: "Idempotency-Key \"k1\" was used with another body by this user" },
  idempotency_in_progress: { status: 409, message: "the first request with Idempotency-Key \"k1\" is still in progress; retry in 1 s" },
  content_too_large: { status: 413, message: "content is 40000 bytes; the limit is 32768" },
  body_too_large: { status: 413, message: "request body is over 200704 bytes, the limit" },
  unsupported_media_type: { status: 415, message: "content-type must be application/json, got text/plain" },
  invalid_body: { status: 422, message: "user_id: Expected string", field: "user_id" },
  delay_too_long: {
    status: 422,
    message: "delay_ms: 172800 s from now is past the limit of 86400 s (MAX_DELAY_SECONDS: RocketMQ's timer limit, proxy maxDelayTimeMills / broker timerMaxDelaySec)",
    field: "delay_ms",
  },
  rate_limited: { status: 429, message: "tenant acme is over its rate of 5/s (burst 10); retry in 1 s" },
  redis_unavailable: { status: 503, message: "Redis is unavailable; retry later" },
  rocketmq_unavailable: { status: 503, message: "RocketMQ is unavailable; retry later" },
  not_ready: { status: 503, message: "RocketMQ is unavailable" },
} as const satisfies Record<string, { status: number; message: string; field?: string }>;
export type ErrorCode = keyof typeof ERRORS;

/** An HttpError with a code from the table (its status follows) and, for a bad body, the field at fault. */
export class ApiError extends HttpError {
  constructor(code: ErrorCode, message: string, readonly field?: string, headers?: Record<string, string>) {
    super(ERRORS[code].status, code, message, headers);
  }
}

export const jsonResponse = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

export function errorResponse(e: HttpError): Response {
  const field = e instanceof ApiError ? e.field : undefined;
  const body: ErrorBody = { error: e.code, message: e.message, ...(field ? { field } : {}) };
  return jsonResponse(e.status, body, e.headers);
}
