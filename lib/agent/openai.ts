// An OpenAI-compatible chat-completions agent (LLM_BASE_URL, LLM_API_KEY, LLM_MODEL) built to survive
// a small real model:
// - structured output: `response_format` json_schema; where the server refuses it (a 4xx naming
//   response_format, or llama-cpp-python's 500 saying so), json_object carrying the schema (its grammar
//   extension), then plain json_object. The first refusal moves this process to the next format for good.
// - an invalid answer goes back to the model with the validation error, up to LLM_REPAIR_TRIES
//   times, then the attempt fails as retryable; a 4xx stays final; each call has LLM_TIMEOUT_MS.
// - at most `slots` calls in flight per process (LLM_MAX_CONCURRENCY); a task holds its slot for the
//   whole attempt (call and repairs), and its run clock is paused while it waits for one.
// - streamed (`stream: true`, usage asked for with `stream_options.include_usage`): the answer's text so
//   far is the task's progress `partial`, reported at most every PARTIAL_EVERY_MS and once complete.
import { RetryableAgentError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AgentResult } from "../model.ts";
import { type ChatAnswer, type ChatMessage, chatCall, FormatRejected } from "./chat.ts";
import { checkAnswer, PROFILE_SCHEMA, repairMessage, SYSTEM_PROMPT } from "./profile.ts";
import type { Semaphore } from "./semaphore.ts";
import type { Agent, AgentTask } from "./types.ts";
import { observeLlmCall } from "../observe/llm.ts";

export { retryAfterMs } from "./chat.ts";

export interface OpenAiOptions {
  baseUrl: string;
  /** Absent or empty: no Authorization header (a local server needs none). */
  apiKey?: string;
  model: string;
  /** Timeout of one HTTP call (default 60 s). */
  timeoutMs?: number;
  /** Repair requests after an invalid answer, within one attempt (default 2). */
  repairTries?: number;
  maxTokens?: number;
  /** Bounds the calls in flight; shared by every task of the process. */
  slots?: Semaphore;
  log?: Logger;
  fetch?: typeof fetch;
  /**
   * The fleet's LLM budget (lib/tenancy/llm-budget.ts): each call waits for its turn first, with the
   * task's clock paused and before the call's own timeout starts; the answer reports the tokens used.
   */
  budget?: { turn(requestBody: string, signal?: AbortSignal): Promise<(res: Response) => void> };
}

/** Partial text is reported at most this often (and the worker writes progress no more often either). */
export const PARTIAL_EVERY_MS = 250;

/** Runs a wait with the task's run clock stopped (lib/agent/clock.ts), or just runs it. */
type Pause = <T>(wait: () => Promise<T>) => Promise<T>;

/** Response formats, most precise first. */
export const FORMATS = [
  { name: "json_schema", value: { type: "json_schema", json_schema: { name: "profile", schema: PROFILE_SCHEMA } } },
  { name: "json_object+schema", value: { type: "json_object", schema: PROFILE_SCHEMA } },
  { name: "json_object", value: { type: "json_object" } },
] as const;

export function openAiAgent(opts: OpenAiOptions): Agent & { format(): string } {
  const chat = {
    url: opts.baseUrl.replace(/\/+$/, "") + "/chat/completions",
    apiKey: opts.apiKey,
    timeoutMs: opts.timeoutMs ?? 60_000,
    fetch: opts.fetch ?? fetch,
  };
  const repairTries = opts.repairTries ?? 2;
  /** Index into FORMATS: per agent, and there is one agent per worker process. */
  let format = 0;

  async function call(messages: ChatMessage[], signal: AbortSignal, taskId: string, pause: Pause, onText?: (text: string) => void): Promise<ChatAnswer> {
    for (;;) {
      const used = format;
      const body = {
        model: opts.model, messages, response_format: FORMATS[used]!.value, ...(opts.maxTokens ? { max_tokens: opts.maxTokens } : {}),
        stream: true, stream_options: { include_usage: true },
      };
      const budget = opts.budget;
      const answered = budget ? await pause(() => budget.turn(JSON.stringify(body), signal)) : undefined;
      try {
        return await observeLlmCall(opts.model, () => chatCall(chat, body, signal, answered, onText));
      } catch (e) {
        if (!(e instanceof FormatRejected)) throw e;
        if (used === FORMATS.length - 1) throw e.final;
        // Calls in flight may all be refused at once: only the first moves the format on.
        if (format === used) {
          format = used + 1;
          opts.log?.warn("LLM server refused the response format; using a simpler one from now on", {
            task_id: taskId, refused: FORMATS[used]!.name, now: FORMATS[format]!.name, answer: e.message,
          });
        }
      }
    }
  }

  async function converse(
    content: string, signal: AbortSignal, taskId: string, pause: Pause, report?: AgentTask["usage"], progress?: AgentTask["progress"],
  ): Promise<AgentResult> {
    // The text so far, at most every PARTIAL_EVERY_MS; the whole answer once it is in.
    let lastReport = -Infinity;
    const onText = progress
      ? (text: string) => {
          const now = performance.now();
          if (now - lastReport < PARTIAL_EVERY_MS) return;
          lastReport = now;
          progress({ partial: text });
        }
      : undefined;
    const messages: ChatMessage[] = [
      { role: "system", content: SYSTEM_PROMPT },
      { role: "user", content },
    ];
    for (let repair = 0; ; repair++) {
      const t0 = performance.now();
      const answer = await call(messages, signal, taskId, pause, onText);
      if (progress && answer.content !== undefined) progress({ partial: answer.content });
      report?.({
        model: opts.model, prompt_tokens: answer.usage?.prompt_tokens ?? 0, completion_tokens: answer.usage?.completion_tokens ?? 0,
        ms: Math.round(performance.now() - t0),
      });
      opts.log?.debug("LLM answer", {
        task_id: taskId, ms: Math.round(performance.now() - t0), finish_reason: answer.finishReason,
        // "usage_in"/"usage_out": a field named like "token" is masked by the logger as a secret.
        usage_in: answer.usage?.prompt_tokens, usage_out: answer.usage?.completion_tokens,
      });
      const checked = answer.content === undefined
        ? { ok: false as const, problem: "the answer has no message content" }
        : checkAnswer(answer.content, answer.finishReason);
      if (checked.ok) {
        if (repair > 0) opts.log?.info("LLM answer valid after repair", { task_id: taskId, repairs: repair });
        return checked.result;
      }
      if (repair >= repairTries)
        throw new RetryableAgentError(`LLM answer invalid after ${repairTries} repair request(s): ${checked.problem}`);
      opts.log?.info("LLM answer invalid; asking the model to repair it", {
        task_id: taskId, problem: checked.problem, repair: repair + 1, answer: answer.content?.slice(0, 300), finish_reason: answer.finishReason,
      });
      messages.push({ role: "assistant", content: answer.content ?? "" }, { role: "user", content: repairMessage(checked.problem) });
    }
  }

  const agent: Agent = async (task, signal) => {
    const pause: Pause = task.paused ? (w) => task.paused!(w) : (w) => w();
    if (!opts.slots) return converse(task.content, signal, task.task_id, pause, task.usage, task.progress);
    const slots = opts.slots;
    const release = await pause(() => slots.acquire(signal));
    try {
      return await converse(task.content, signal, task.task_id, pause, task.usage, task.progress);
    } finally {
      release();
    }
  };
  return Object.assign(agent, { format: () => FORMATS[format]!.name });
}
