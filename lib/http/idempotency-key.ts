// The Idempotency-Key request header of POST /tasks (lib/tasks/idempotency.ts does the rest).
import { ApiError } from "./errors.ts";

/** 1 to 255 printable ASCII characters; HTTP drops leading and trailing spaces of a header value. */
export const IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7E]([\\x20-\\x7E]{0,253}[\\x21-\\x7E])?$";
const keyPattern = new RegExp(IDEMPOTENCY_KEY_PATTERN);

/** The request's Idempotency-Key, undefined without one; 400 naming the header when it is malformed. */
export function idempotencyKeyOf(request: Request): string | undefined {
  const v = request.headers.get("idempotency-key");
  if (v === null) return undefined;
  if (!keyPattern.test(v))
    throw new ApiError(
      "invalid_idempotency_key",
      `Idempotency-Key must be 1 to 255 printable ASCII characters (got ${v.length === 0 ? "an empty value" : `${v.length} characters`})`,
      "Idempotency-Key",
    );
  return v;
}
