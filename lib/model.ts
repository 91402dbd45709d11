// One schema per model: the HTTP body, the RocketMQ payloads and the task view are TypeBox values
// with types of the same name. The message shapes are the original Python service's, byte for byte
// in field names and meaning; fields we add are optional for its consumers.
import { Type, type Static } from "@sinclair/typebox";

export const TaskStatus = Type.Union([
  Type.Literal("queued"), Type.Literal("running"), Type.Literal("done"), Type.Literal("failed"),
  // final: POST /tasks/:id/cancel (lib/tasks/cancel.ts)
  Type.Literal("canceled"),
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
  user_id: Type.String({ minLength: 1, maxLength: USER_ID_MAX }),
  payload: Type.String(),
  action: Type.Literal(ACTION),
  /** Added: the tenant whose API key submitted the task (absent without keys). */
  tenant: Type.Optional(Type.String({ maxLength: 64 })),
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
});
export type TaskView = Static<typeof TaskView>;

export const Accepted = Type.Object({ task_id: TaskId, status: Type.Literal("queued") });
/** POST /tasks replayed for an Idempotency-Key already used with the same body: the first task, as it is now. */
export const Replayed = Type.Object({ task_id: TaskId, status: TaskStatus });
export const ErrorBody = Type.Object({
  error: Type.String({ description: "machine-readable code" }),
  message: Type.String({ description: "what was wrong" }),
  field: Type.Optional(Type.String()),
});
export type ErrorBody = Static<typeof ErrorBody>;

export const encodeJson = (v: unknown) => Buffer.from(JSON.stringify(v), "utf8");
