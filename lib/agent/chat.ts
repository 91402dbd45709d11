// One chat-completions call to an OpenAI-compatible server, with its own timeout, and the sorting of
// what can go wrong: 429/5xx/network/timeout are retryable (with Retry-After), a 4xx about
// `response_format` is reported apart (the caller falls back to a simpler format), other 4xx are final.
import { PermanentAgentError, RetryableAgentError } from "../errors.ts";

export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

export interface ChatOptions {
  url: string;
  /** Empty: no Authorization header (a local server). */
  apiKey?: string;
  timeoutMs: number;
  fetch: typeof fetch;
}

export type ChatAnswer = {
  content: string | undefined;
  finishReason?: string;
  /** `usage` as the server reported it, when it did. */
  usage?: { prompt_tokens?: number; completion_tokens?: number };
};

/** The server refused the requested response format (a 4xx naming it): try the next, simpler one. */
export class FormatRejected extends Error {
  override name = "FormatRejected";
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

class CallTimeout extends Error {
  override name = "CallTimeout";
}

export async function chatCall(opts: ChatOptions, body: Record<string, unknown>, signal: AbortSignal): Promise<ChatAnswer> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new CallTimeout(`LLM call timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
  const both = AbortSignal.any([signal, timeout.signal]);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  try {
    let res: Response;
    let text: string;
    try {
      res = await opts.fetch(opts.url, { method: "POST", signal: both, headers, body: JSON.stringify(body) });
      text = await res.text();
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (timeout.signal.aborted) throw new RetryableAgentError((timeout.signal.reason as Error).message);
      throw new RetryableAgentError(`LLM request failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    if (res.status === 429 || res.status >= 500)
      throw new RetryableAgentError(`LLM answered ${res.status}: ${text.slice(0, 200)}`, retryAfterMs(res.headers.get("retry-after")));
    if (!res.ok) {
      if (/response_format|json_schema/i.test(text)) throw new FormatRejected(`LLM answered ${res.status}: ${text.slice(0, 300)}`);
      throw new PermanentAgentError(`LLM answered ${res.status}: ${text.slice(0, 200)}`);
    }
    let json: { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[]; usage?: ChatAnswer["usage"] } | null = null;
    try {
      json = JSON.parse(text);
    } catch {}
    const choice = json?.choices?.[0];
    // A 200 without a readable completion is the server's fault, not the model's: another attempt may do.
    if (!choice) throw new RetryableAgentError(`LLM answer has no choices[0]: ${text.slice(0, 200)}`);
    const content = choice.message?.content;
    return {
      content: typeof content === "string" ? content : undefined,
      finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : undefined,
      usage: json?.usage && typeof json.usage === "object" ? json.usage : undefined,
    };
  } finally {
    clearTimeout(timer);
  }
}
