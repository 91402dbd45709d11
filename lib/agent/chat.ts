// One chat-completions call to an OpenAI-compatible server, with its own timeout, and the sorting of
// what can go wrong: 429/5xx/network/timeout are retryable (with Retry-After), a refusal naming
// `response_format` is reported apart (the caller falls back to a simpler format), other 4xx are final.
// A streamed answer (`stream: true`: Server-Sent Events of `chat.completion.chunk`s, then `[DONE]`)
// is read chunk by chunk, its text so far told to `onText`; a server that ignores `stream` and
// answers one JSON body is read as before.
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

type Chunk = {
  choices?: { delta?: { content?: unknown }; message?: { content?: unknown }; finish_reason?: unknown }[];
  usage?: ChatAnswer["usage"];
  error?: { message?: unknown };
};

/**
 * Reads a streamed answer: `data:` lines of JSON chunks until `[DONE]` (or the end of the body).
 * The text is the deltas' content joined; `usage` comes in a last chunk without choices when
 * `stream_options.include_usage` was asked for and the server supports it (llama-cpp-python ignores it).
 */
async function readStream(res: Response, onText?: (text: string) => void): Promise<ChatAnswer & { choices: number }> {
  const out: ChatAnswer & { choices: number } = { content: undefined, choices: 0 };
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data: string[] = [];
  const dispatch = () => {
    const payload = data.join("\n");
    data = [];
    if (payload === "" || payload === "[DONE]") return payload === "[DONE]";
    let chunk: Chunk;
    try {
      chunk = JSON.parse(payload) as Chunk;
    } catch {
      throw new RetryableAgentError(`LLM stream sent a chunk that is not JSON: ${payload.slice(0, 200)}`);
    }
    if (chunk.error) throw new RetryableAgentError(`LLM stream failed: ${String(chunk.error.message ?? JSON.stringify(chunk.error)).slice(0, 200)}`);
    if (chunk.usage && typeof chunk.usage === "object") out.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) return false;
    out.choices++;
    const piece = choice.delta?.content ?? choice.message?.content;
    if (typeof piece === "string" && piece !== "") {
      out.content = (out.content ?? "") + piece;
      onText?.(out.content);
    }
    if (typeof choice.finish_reason === "string") out.finishReason = choice.finish_reason;
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
      if (line === "") {
        if (dispatch()) {
          await reader.cancel().catch(() => {});
          return out;
        }
      } else if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
      // other fields (event:, id:, comments) carry nothing we use
    }
  }
  dispatch();
  return out;
}

/**
 * `answered`: told the response before its body is read (the LLM budget counts its tokens); for a
 * streamed answer, once it is read, with a JSON response holding the stream's `usage`.
 * `onText`: the text so far of a streamed answer, after each chunk that adds to it.
 */
export async function chatCall(
  opts: ChatOptions, body: Record<string, unknown>, signal: AbortSignal, answered?: (res: Response) => void,
  onText?: (text: string) => void,
): Promise<ChatAnswer> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new CallTimeout(`LLM call timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
  const both = AbortSignal.any([signal, timeout.signal]);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  try {
    let res: Response;
    let text = "";
    let streamed: Awaited<ReturnType<typeof readStream>> | undefined;
    try {
      res = await opts.fetch(opts.url, { method: "POST", signal: both, headers, body: JSON.stringify(body) });
      if (res.ok && /^text\/event-stream/i.test(res.headers.get("content-type") ?? "")) {
        streamed = await readStream(res, onText);
        answered?.(Response.json({ usage: streamed.usage ?? {} }));
      } else {
        answered?.(res);
        text = await res.text();
      }
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      if (e instanceof RetryableAgentError) throw e;
      if (timeout.signal.aborted) throw new RetryableAgentError((timeout.signal.reason as Error).message);
      throw new RetryableAgentError(`LLM request failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    if (streamed) {
      if (streamed.choices === 0) throw new RetryableAgentError("LLM stream ended without a choice");
      // A stream cut short (a server that interrupts one answer for the next request, a proxy) ends
      // without the last chunk's finish_reason: not an answer to validate or repair.
      if (!streamed.finishReason) throw new RetryableAgentError(`LLM stream ended before the answer did (no finish_reason) after ${streamed.content?.length ?? 0} characters`);
      return { content: streamed.content, finishReason: streamed.finishReason, usage: streamed.usage };
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
