// An OpenAI-compatible chat-completions agent (LLM_BASE_URL + LLM_API_KEY, the original's variables).
// It asks for a JSON object, validates it against AgentResult, and sorts failures: 429 and 5xx are
// retryable (honouring Retry-After), other 4xx and invalid answers are final.
import { Value } from "@sinclair/typebox/value";
import { PermanentAgentError, RetryableAgentError } from "../errors.ts";
import { AgentResult } from "../model.ts";
import type { Agent } from "./types.ts";

export interface OpenAiOptions {
  baseUrl: string;
  apiKey: string;
  model: string;
  fetch?: typeof fetch;
}

const SYSTEM_PROMPT =
  "You build a short user-interest profile from the user's text. Answer with one JSON object only: " +
  '{"tags": [string, ...] (1 to 5 short interest tags), "score": integer 0-100 (purchase intent), "reason": string (one sentence)}.';

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function openAiAgent(opts: OpenAiOptions): Agent {
  const url = opts.baseUrl.replace(/\/+$/, "") + "/chat/completions";
  const doFetch = opts.fetch ?? fetch;
  return async (task, signal) => {
    let res: Response;
    try {
      res = await doFetch(url, {
        method: "POST",
        signal,
        headers: { "content-type": "application/json", authorization: `Bearer ${opts.apiKey}` },
        body: JSON.stringify({
          model: opts.model,
          response_format: { type: "json_object" },
          messages: [
            { role: "system", content: SYSTEM_PROMPT },
            { role: "user", content: task.content },
          ],
        }),
      });
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw new RetryableAgentError(`LLM request failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    if (res.status === 429 || res.status >= 500) {
      const text = await res.text().catch(() => "");
      throw new RetryableAgentError(`LLM answered ${res.status}: ${text.slice(0, 200)}`, retryAfterMs(res.headers.get("retry-after")));
    }
    if (!res.ok) {
      const text = await res.text().catch(() => "");
      throw new PermanentAgentError(`LLM answered ${res.status}: ${text.slice(0, 200)}`);
    }
    const body = (await res.json().catch(() => null)) as { choices?: { message?: { content?: string } }[] } | null;
    const content = body?.choices?.[0]?.message?.content;
    if (typeof content !== "string") throw new PermanentAgentError("LLM answer has no choices[0].message.content");
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      throw new PermanentAgentError(`LLM answer is not JSON: ${content.slice(0, 200)}`);
    }
    const converted = Value.Convert(AgentResult, parsed);
    if (!Value.Check(AgentResult, converted)) {
      const first = [...Value.Errors(AgentResult, converted)][0];
      throw new PermanentAgentError(`LLM answer does not match {tags, score, reason}: ${first?.path} ${first?.message}`);
    }
    return Value.Clean(AgentResult, converted) as AgentResult;
  };
}
