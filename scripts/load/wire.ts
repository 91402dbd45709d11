// What load.ts counts, read so that any wire-compatible system can be measured: ours, and the
// original Python service (its API answers 200, its result messages carry no status).

/** The task id of a submit answer: any 2xx whose JSON body has a task_id; undefined otherwise. */
export function acceptedTaskId(status: number, body: unknown): string | undefined {
  if (status < 200 || status > 299) return undefined;
  const id = (body as { task_id?: unknown } | null)?.task_id;
  return typeof id === "string" && id ? id : undefined;
}

/**
 * The outcome a result message reports: its `status` when it has one (ours); without one (the
 * original's), done when `result` is not null and failed when it is.
 */
export function resultOutcome(body: unknown): { taskId: string; status: "done" | "failed" } | undefined {
  const b = body as { task_id?: unknown; status?: unknown; result?: unknown } | null;
  if (!b || typeof b.task_id !== "string") return undefined;
  if (b.status === "done" || b.status === "failed") return { taskId: b.task_id, status: b.status };
  if (b.status !== undefined) return undefined;
  if (!("result" in b)) return undefined;
  return { taskId: b.task_id, status: b.result === null ? "failed" : "done" };
}
