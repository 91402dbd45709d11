// One chat-completions call to an OpenAI-compatible server, with its own timeout, and the sorting of
// what can go wrong: 429/5xx/network/timeout are retryable (with Retry-After), a refusal naming
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

/**
 * The server refused the requested response format: an error answer naming `response_format`. Most
 * servers say so with a 400 or 422; llama-cpp-python 0.3.36 answers 500 with pydantic's validation
 * error ("Input should be 'text' or 'json_object'"), so a 5xx naming it counts too. `final` is the
 * error to throw when no simpler format is left.
 */
export class FormatRejected extends Error {
  override name = "FormatRejected";
  constructor(message: string, readonly final: Error) {
    super(message);
  }
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

/** `answered`: told the response before its body is read (the LLM budget counts its tokens). */
export async function chatCall(
  opts: ChatOptions, body: Record<string, unknown>, signal: AbortSignal, answered?: (res: Response) => void,
): Promise<ChatAnswer> {
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
      answered?.(res);
      text = await res.text();
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (timeout.signal.aborted) throw new RetryableAgentError((timeout.signal.reason as Error).message);
      throw new RetryableAgentError(`LLM request failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    if (!res.ok) {
      const what = `LLM answered ${res.status}: ${text.slice(0, 200)}`;
      const err = res.status === 429 || res.status >= 500
        ? new RetryableAgentError(what, retryAfterMs(res.headers.get("retry-after")))
        : new PermanentAgentError(what);
      if (res.status !== 429 && /response_format/i.test(text)) throw new FormatRejected(`LLM answered ${res.status}: ${text.slice(0, 300)}`, err);
      throw err;
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
