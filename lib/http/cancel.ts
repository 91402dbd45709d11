// POST /tasks/:id/cancel: no body and no content type needed (a bare `curl -X POST`); any body sent
// is not read. 202 with the task's view: `canceled` at once for a task that had not started;
// `running` for a running one, whose worker aborts it within about a second (lib/tasks/cancel.ts).
// An API key's tenant sees only its own tasks (lib/http/auth.ts answers 404 for another's).
import { Elysia } from "elysia";
import type { Config } from "../config.ts";
import { ErrorBody, TaskView } from "../model.ts";
import type { CancelService } from "../tasks/cancel.ts";
import { ApiError } from "./errors.ts";
import { taskIdParam } from "./task-id.ts";

export function cancelRoutes(deps: { cfg: Config; cancel: CancelService }) {
  const unavailable = () =>
    new ApiError("redis_unavailable", "Redis is unavailable; retry later", undefined, { "retry-after": String(deps.cfg.RETRY_AFTER_SECONDS) });
  return new Elysia({ name: "cancel" }).post(
    "/tasks/:id/cancel",
    async ({ params, set }) => {
      const id = taskIdParam(params);
      const r = await deps.cancel.cancel(id).catch((e) => {
        throw Object.assign(unavailable(), { cause: e });
      });
      if (r.kind === "not_found") throw new ApiError("task_not_found", `no task ${id}`);
      if (r.kind === "finished") throw new ApiError("already_finished", `task ${id} is already ${r.status}`);
      set.status = 202;
      return r.view;
    },
    {
      parse: "none",
      response: { 202: TaskView, 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      detail: { summary: "Cancel a task: at once if it has not started, within about a second if it runs" },
    },
  );
}
