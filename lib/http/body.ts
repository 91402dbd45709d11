// Reading and checking the POST /tasks body ourselves, with a cap: a body over the limit is refused
// with our JSON 413 as soon as its declared length or its bytes read so far pass the limit, whether
// it came with Content-Length or chunked. Bun's own maxRequestBodySize stays above the cap as a
// backstop only: past it Bun answers an empty 413 and closes the connection (http/app.ts).
import { ApiError } from "./errors.ts";
import { USER_ID_MAX, USER_ID_PATTERN, type TaskInput } from "../model.ts";

/** Largest accepted request body: the content limit with room for JSON escaping and the user id. */
export const maxBodyBytes = (maxContentBytes: number) => maxContentBytes * 6 + 4_096;

/** application/json, with or without parameters (charset); anything else is a 415. */
export function checkJsonType(request: Request): void {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new ApiError(
      "unsupported_media_type",
      `content-type must be application/json${type ? `, got ${type.slice(0, 100)}` : " (none was sent)"}`,
    );
}

/** The body's bytes, never more than `max` of them read: past it, a 413 (and the rest is not read). */
export async function readCapped(request: Request, max: number): Promise<Buffer> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > max)
    throw new ApiError("body_too_large", `request body is ${declared} bytes; the limit is ${max}`);
  if (!request.body) return Buffer.alloc(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      void reader.cancel().catch(() => {});
      throw new ApiError("body_too_large", `request body is over ${max} bytes, the limit`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

const notBlank = new RegExp(USER_ID_PATTERN);

const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/**
 * The task input from a JSON body: 400 when it is not JSON, 422 naming the field when a field is
 * missing, of another type, empty or too long, 413 when the content is over `maxContentBytes` in
 * UTF-8. Unknown fields are ignored, as the original (pydantic) did. Lengths count code points, as
 * JSON Schema and pydantic do (not UTF-16 units).
 */
export function parseTaskInput(bytes: Buffer, maxContentBytes: number): TaskInput {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ApiError("malformed_json", bytes.length ? "request body is not valid JSON" : "request body is empty; send a JSON object");
  }
  if (typeName(json) !== "object")
    throw new ApiError("invalid_body", `request body must be a JSON object with user_id and content, got ${typeName(json)}`);
  const obj = json as Record<string, unknown>;
  for (const field of ["user_id", "content"] as const) {
    const v = obj[field];
    if (v === undefined) throw new ApiError("invalid_body", `${field}: required`, field);
    if (typeof v !== "string") throw new ApiError("invalid_body", `${field}: expected a string, got ${typeName(v)}`, field);
    if (v.length === 0) throw new ApiError("invalid_body", `${field}: must not be empty`, field);
  }
  const user_id = obj.user_id as string;
  const content = obj.content as string;
  const points = [...user_id].length;
  if (points > USER_ID_MAX)
    throw new ApiError("invalid_body", `user_id: at most ${USER_ID_MAX} characters, got ${points}`, "user_id");
  if (!notBlank.test(user_id)) throw new ApiError("invalid_body", "user_id: must not be blank", "user_id");
  const size = Buffer.byteLength(content, "utf8");
  if (size > maxContentBytes)
    throw new ApiError("content_too_large", `content is ${size} bytes; the limit is ${maxContentBytes}`);
  return { user_id, content, ...parseScheduleFields(obj) };
}

/** RFC 3339 date-time (section 5.6): full date, T (or t, or a space), time, offset or Z. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Milliseconds since the epoch of an RFC 3339 date-time (NaN for a day or time that does not exist). */
export function parseRfc3339(s: string): number {
  // Date.parse reads ISO 8601's form; RFC 3339 also allows a space or a lower-case t and z, and a
  // leap second (:60), which JavaScript's clock does not have: read as the second after :59.
  const [y, m, d] = [Number(s.slice(0, 4)), Number(s.slice(5, 7)), Number(s.slice(8, 10))];
  const day = new Date(0);
  day.setUTCFullYear(y, m - 1, d); // Date.parse would roll 2023-02-30 over to March 2
  if (m < 1 || m > 12 || day.getUTCDate() !== d) return NaN;
  const time = s.slice(11).replace(/z$/, "Z");
  if (Number(time.slice(0, 2)) > 23 || Number(time.slice(3, 5)) > 59 || Number(time.slice(6, 8)) > 60) return NaN;
  const leap = time.slice(6, 8) === "60";
  const ms = Date.parse(`${s.slice(0, 10)}T${leap ? `${time.slice(0, 6)}59${time.slice(8)}` : time}`);
  return leap ? ms + 1_000 : ms;
}

/** delay_ms and run_at, each checked alone; both at once is a 400 naming run_at (lib/http/schedule.ts has the limit). */
function parseScheduleFields(obj: Record<string, unknown>): Pick<TaskInput, "delay_ms" | "run_at"> {
  const { delay_ms, run_at } = obj;
  if (delay_ms !== undefined && run_at !== undefined)
    throw new ApiError("conflicting_fields", "run_at: give delay_ms or run_at, not both", "run_at");
  if (delay_ms !== undefined) {
    if (typeof delay_ms !== "number" || !Number.isSafeInteger(delay_ms) || delay_ms < 0)
      throw new ApiError("invalid_body", `delay_ms: expected an integer of 0 or more, got ${JSON.stringify(delay_ms)?.slice(0, 40)}`, "delay_ms");
    return { delay_ms };
  }
  if (run_at !== undefined) {
    if (typeof run_at !== "string") throw new ApiError("invalid_body", `run_at: expected an RFC 3339 date-time string, got ${typeName(run_at)}`, "run_at");
    if (!RFC3339.test(run_at) || !Number.isFinite(parseRfc3339(run_at)))
      throw new ApiError("invalid_body", `run_at: not an RFC 3339 date-time (e.g. 2026-12-01T09:30:00Z): ${JSON.stringify(run_at.slice(0, 40))}`, "run_at");
    return { run_at };
  }
  return {};
}
