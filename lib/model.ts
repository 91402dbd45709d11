// One schema per model: the HTTP body, the RocketMQ payloads and the task view are TypeBox values
// with types of the same name. The message shapes are the original Python service's, byte for byte
// in field names and meaning; fields we add are optional for its consumers.
import { Type, type Static } from "@sinclair/typebox";

export const TaskStatus = Type.Union([
  Type.Literal("queued"), Type.Literal("running"), Type.Literal("done"), Type.Literal("failed"),
  // final: POST /tasks/:id/cancel (lib/tasks/cancel.ts)
  Type.Literal("canceled"),
  // A delayed task (delay_ms / run_at) until it is due and claimed (lib/worker/delayed.ts).
  Type.Literal("scheduled"),
]);
export type TaskStatus = Static<typeof TaskStatus>;

export const REQUEST_TAG = "ProfileGen";
export const RESULT_TAG = "ProfileResult";
export const ACTION = "generate_profile";
export const USER_ID_MAX = 128;

/** Task ids are UUIDs (the original used uuid4). */
export const TASK_ID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
export const TaskId = Type.String({ pattern: TASK_ID_PATTERN, description: "task id (UUID)" });
export const isTaskId = (s: string) => new RegExp(TASK_ID_PATTERN).test(s);

/**
 * user_id holds a character other than ASCII whitespace: ASCII whitespace is what JavaScript's and
 * Python's `\s` agree on, so the document's pattern means the same to clients in either.
 */
export const USER_ID_PATTERN = "[^\\t\\n\\v\\f\\r ]";

/**
 * POST /tasks body. lib/http/body.ts checks it (lengths in code points, as JSON Schema counts them; the
 * content limit, MAX_CONTENT_BYTES, in UTF-8 bytes) and lib/http/openapi.ts documents it.
 */
export const TaskInput = Type.Object(
  {
    user_id: Type.String({
      minLength: 1,
      maxLength: USER_ID_MAX,
      pattern: USER_ID_PATTERN,
      description: `who the task is for: 1 to ${USER_ID_MAX} characters, not only whitespace`,
    }),
    content: Type.String({ minLength: 1, description: "text the agent works on" }),
    // Delayed tasks (lib/http/schedule.ts): at most one of the two; the limit (MAX_DELAY_SECONDS) is
    // written into the served document by lib/http/openapi.ts.
    delay_ms: Type.Optional(Type.Integer({ minimum: 0, description: "run the task this many ms from now (0: at once)" })),
    run_at: Type.Optional(Type.String({ format: "date-time", description: "run the task at this time (RFC 3339); in the past: at once" })),
  },
  // Unknown fields are ignored (stripped), as the original FastAPI/pydantic model did.
);
export type TaskInput = Static<typeof TaskInput>;

/** What the agent returns, and the `result` of a result message. */
export const AgentResult = Type.Object({
  tags: Type.Array(Type.String()),
  score: Type.Integer(),
  reason: Type.String(),
});
export type AgentResult = Static<typeof AgentResult>;

/** Body of a message on MQ_TOPIC_REQUEST (tag ProfileGen, key = task id). */
export const RequestMessage = Type.Object({
  task_id: TaskId,
  // TypeBox counts UTF-16 units, the API code points (lib/http/body.ts): 128 code points are up to
  // 256 units. At 128 units, a task with 65-128 astral characters (emoji) was accepted by the API and
  // set aside by every worker as an invalid message: queued forever (found by schemathesis through
  // GET ?wait and the event stream, which wait for the end).
  user_id: Type.String({ minLength: 1, maxLength: 2 * USER_ID_MAX }),
  payload: Type.String(),
  action: Type.Literal(ACTION),
  /** Added: the tenant whose API key submitted the task (absent without keys). */
  tenant: Type.Optional(Type.String({ maxLength: 64 })),
  /** Added: when a delayed task is due (RFC 3339); absent for a task to run at once. */
  run_at: Type.Optional(Type.String()),
});
export type RequestMessage = Static<typeof RequestMessage>;

/**
 * What a task's LLM calls cost, summed over its attempts (added; absent for an agent that makes no
 * LLM call, such as the demo agent). Recorded by the worker with each attempt's end (lib/lua/finish.lua).
 */
export const TaskUsage = Type.Object({
  model: Type.String({ description: "LLM_MODEL of the worker that made the last call" }),
  prompt_tokens: Type.Integer({ minimum: 0, description: "as the LLM service reported them" }),
  completion_tokens: Type.Integer({ minimum: 0 }),
  llm_ms: Type.Integer({ minimum: 0, description: "time in answered LLM calls (ms), repairs and waits for the fleet's LLM budget included" }),
  calls: Type.Integer({ minimum: 0, description: "answered LLM calls, repair requests included" }),
  attempts: Type.Integer({ minimum: 0, description: "attempts that made LLM calls" }),
});
export type TaskUsage = Static<typeof TaskUsage>;

/** Body of a message on MQ_TOPIC_RESULT (tag ProfileResult, key = task id). */
export const ResultMessage = Type.Object({
  task_id: Type.String(),
  user_id: Type.String(),
  result: Type.Union([AgentResult, Type.Null()]),
  status: Type.Union([Type.Literal("done"), Type.Literal("failed"), Type.Literal("canceled")]),
  error: Type.Optional(Type.String()),
  attempts: Type.Integer(),
  finished_at: Type.String({ description: "ISO 8601" }),
  /** Added: the task's LLM usage, when its agent made LLM calls. */
  usage: Type.Optional(TaskUsage),
});
export type ResultMessage = Static<typeof ResultMessage>;

/**
 * An agent's progress report (its context's `progress()`, lib/agent/types.ts): the latest one is the
 * task's `progress` while it runs, and each one written is a `progress` event (GET /tasks/:id/events).
 */
export const TaskProgress = Type.Object({
  pct: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: "percent done" })),
  message: Type.Optional(Type.String({ description: "what the agent is doing" })),
  partial: Type.Optional(Type.String({ description: "the output so far (streamed LLM text), whole, not a delta" })),
});
export type TaskProgress = Static<typeof TaskProgress>;

/** GET /tasks/:id answer. */
export const TaskView = Type.Object({
  task_id: TaskId,
  status: TaskStatus,
  result: Type.Union([AgentResult, Type.Null()]),
  error: Type.Optional(Type.String()),
  user_id: Type.Optional(Type.String()),
  attempts: Type.Integer(),
  created_at: Type.Optional(Type.String()),
  updated_at: Type.Optional(Type.String()),
  started_at: Type.Optional(Type.String()),
  finished_at: Type.Optional(Type.String()),
  usage: Type.Optional(TaskUsage),
  /** a delayed task's due time */
  run_at: Type.Optional(Type.String()),
  progress: Type.Optional(TaskProgress),
});
export type TaskView = Static<typeof TaskView>;

export const Accepted = Type.Object({
  task_id: TaskId,
  status: Type.Union([Type.Literal("queued"), Type.Literal("scheduled")]),
  /** with status scheduled: when it is due */
  run_at: Type.Optional(Type.String({ format: "date-time" })),
});
export type Accepted = Static<typeof Accepted>;
/** POST /tasks replayed for an Idempotency-Key already used with the same body: the first task, as it is now. */
export const Replayed = Type.Object({ task_id: TaskId, status: TaskStatus });

/** GET /tasks answer: one page of a user's tasks, newest first. */
export const TaskPage = Type.Object({
  tasks: Type.Array(TaskView),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: "pass as `cursor` for the next page; null: no more" }),
});
export type TaskPage = Static<typeof TaskPage>;
export const ErrorBody = Type.Object({
  error: Type.String({ description: "machine-readable code" }),
  message: Type.String({ description: "what was wrong" }),
  field: Type.Optional(Type.String()),
});
export type ErrorBody = Static<typeof ErrorBody>;

export const encodeJson = (v: unknown) => Buffer.from(JSON.stringify(v), "utf8");
