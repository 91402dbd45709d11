// The `:id` path parameter of the task routes, read once for all of them. Elysia's own router (it
// routes what Bun's exact-path router does not, e.g. `/tasks/%FF/` with its trailing slash) decodes
// a parameter with fast-decode-uri-component, which gives `null`, not a string, for a percent-escape
// that is not UTF-8; Bun's router gives a string with U+FFFD. Either way the answer is a 400.
import { isTaskId } from "../model.ts";
import { ApiError } from "./errors.ts";

/** The route's task id, or an ApiError invalid_task_id (400) when it is not a UUID. */
export function taskIdParam(params: { id: string }): string {
  const id: unknown = params.id; // typed string by Elysia, null at runtime (above)
  if (typeof id === "string" && isTaskId(id)) return id;
  const got = typeof id === "string" ? JSON.stringify(id.slice(0, 64)) : "a path segment that is not UTF-8 once percent-decoded";
  throw new ApiError("invalid_task_id", `task id must be a UUID, got ${got}`);
}
