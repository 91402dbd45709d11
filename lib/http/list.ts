// GET /tasks?user_id=…&status=…&limit=…&cursor=…: one user's tasks, newest first, a page at a time,
// from the user's listing index (lib/state/user-index.ts). With API keys the tenant is the key's: a
// user id names a user inside the tenant, so another tenant's user of the same name is not listed.
// The query is read from the URL ourselves: a parameter given twice is a 400, not its first value.
import { Elysia } from "elysia";
import { ApiError, errorResponse } from "./errors.ts";
import { HttpError } from "../errors.ts";
import { TaskStatus, USER_ID_MAX, USER_ID_PATTERN, type TaskPage } from "../model.ts";
import { decodeCursor, encodeCursor, type UserIndex } from "../state/user-index.ts";
import { queryOf } from "./request-url.ts";

export const LIST_LIMIT_DEFAULT = 20;
export const LIST_LIMIT_MAX = 100;
const STATUSES: readonly string[] = TaskStatus.anyOf.map((s) => s.const as string);
const notBlank = new RegExp(USER_ID_PATTERN);

export interface ListQuery {
  user_id: string;
  status?: TaskStatus;
  limit: number;
  cursor?: ReturnType<typeof decodeCursor>;
}

/** The query of GET /tasks, checked: 400 invalid_query naming the parameter at fault. */
export function parseListQuery(params: URLSearchParams): ListQuery {
  const bad = (field: string, why: string) => new ApiError("invalid_query", `${field}: ${why}`, field);
  const one = (name: string) => {
    const all = params.getAll(name);
    if (all.length > 1) throw bad(name, "given more than once");
    return all[0];
  };
  const user_id = one("user_id");
  if (user_id === undefined) throw bad("user_id", "required");
  const points = [...user_id].length;
  if (points < 1 || points > USER_ID_MAX) throw bad("user_id", `1 to ${USER_ID_MAX} characters, got ${points}`);
  if (!notBlank.test(user_id)) throw bad("user_id", "must not be blank");
  const status = one("status");
  if (status !== undefined && !STATUSES.includes(status))
    throw bad("status", `one of ${STATUSES.join(", ")}, got ${JSON.stringify(status.slice(0, 40))}`);
  const rawLimit = one("limit");
  let limit = LIST_LIMIT_DEFAULT;
  if (rawLimit !== undefined) {
    limit = /^[0-9]{1,3}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= LIST_LIMIT_MAX))
      throw bad("limit", `an integer from 1 to ${LIST_LIMIT_MAX}, got ${JSON.stringify(rawLimit.slice(0, 40))}`);
  }
  const rawCursor = one("cursor");
  const cursor = rawCursor === undefined ? undefined : decodeCursor(rawCursor);
  if (rawCursor !== undefined && !cursor) throw bad("cursor", "not a cursor this API gave out (pass next_cursor back unchanged)");
  return { user_id, ...(status ? { status: status as TaskStatus } : {}), limit, ...(cursor ? { cursor } : {}) };
}

export function listRoutes(deps: { index: UserIndex; retryAfterSeconds: number }) {
  return new Elysia({ name: "list-tasks" }).get(
    "/tasks",
    async (ctx) => {
      try {
        const q = parseListQuery(queryOf(ctx.request.url));
        // The API key's tenant (lib/http/auth.ts derives it for every route); "" without keys.
        const tenant = (ctx as unknown as { tenant?: string }).tenant ?? "";
        let page;
        try {
          page = await deps.index.page(tenant, q.user_id, { status: q.status, limit: q.limit, after: q.cursor });
        } catch (e) {
          throw new ApiError("redis_unavailable", "Redis is unavailable; retry later", undefined, { "retry-after": String(deps.retryAfterSeconds) });
        }
        const body: TaskPage = { tasks: page.tasks, next_cursor: page.next ? encodeCursor(page.next) : null };
        return body;
      } catch (e) {
        if (e instanceof HttpError) return errorResponse(e);
        throw e;
      }
    },
    { detail: { summary: "One user's tasks, newest first, a page at a time" } },
  );
}
