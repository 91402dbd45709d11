// One LLM call seen by metrics (calls by model and outcome, tokens in and out, duration) and traces (a
// client span `chat <model>` under the task's `agent run`, with the GenAI semantic conventions'
// attributes). The outcome is read from the error's class, never its text.
import { PermanentAgentError, RetryableAgentError } from "../errors.ts";
import type { ChatAnswer } from "../agent/chat.ts";
import { FormatRejected } from "../agent/chat.ts";
import { countLlmCall, metrics } from "./metrics.ts";
import { inSpan, SpanKind } from "./tracing.ts";

/** ok, format_rejected (the server refused the response format), retryable_error, permanent_error, aborted, error. */
function outcomeOf(e: unknown): string {
  if (e instanceof FormatRejected) return "format_rejected";
  if (e instanceof RetryableAgentError) return "retryable_error";
  if (e instanceof PermanentAgentError) return "permanent_error";
  if (e instanceof Error && (e.name === "AbortError" || e.name.endsWith("Abort") || e.name === "LeaseLost" || e.name === "TaskTimeout")) return "aborted";
  return "error";
}

export function observeLlmCall(model: string, call: () => Promise<ChatAnswer>): Promise<ChatAnswer> {
  const on = metrics() !== undefined;
  const t0 = on ? performance.now() : 0;
  const p = inSpan(`chat ${model}`, call, {
    kind: SpanKind.CLIENT,
    attributes: { "gen_ai.operation.name": "chat", "gen_ai.request.model": model },
    onResult: (s, a) => {
      if (a.usage?.prompt_tokens !== undefined) s.setAttribute("gen_ai.usage.input_tokens", Number(a.usage.prompt_tokens));
      if (a.usage?.completion_tokens !== undefined) s.setAttribute("gen_ai.usage.output_tokens", Number(a.usage.completion_tokens));
      if (a.finishReason) s.setAttribute("gen_ai.response.finish_reasons", [a.finishReason]);
    },
  });
  if (!on) return p;
  p.then(
    (a) => countLlmCall(model, "ok", (performance.now() - t0) / 1000, a.usage),
    (e) => countLlmCall(model, outcomeOf(e), (performance.now() - t0) / 1000),
  );
  return p;
}
