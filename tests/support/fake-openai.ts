// A fake OpenAI-compatible chat-completions server (Bun.serve on 127.0.0.1, a free port), close to
// what the real service and the gateways in front of it send:
// - answers carry `id`, `object`, `created`, `model` (the one asked for), `choices[].finish_reason`
//   and `usage` (prompt, completion and total tokens);
// - errors use OpenAI's shape `{error: {message, type, param, code}}`;
// - 429 / 503 carry Retry-After, as seconds or as an HTTP date;
// - a slow answer, a hang (headers never come until the client gives up), and a gateway's HTML 502;
// - `stream: true`: the answer as Server-Sent Events of `chat.completion.chunk`s (a role chunk, content
//   pieces `chunkMs` apart, a finish chunk, a usage chunk when `stream_options.include_usage`, then
//   `[DONE]`), as OpenAI streams.
// Replies are scripted per user message (the task's content), so tests sharing a server do not mix.
import { randomBytes } from "node:crypto";

export type Step =
  /**
   * `chunkMs`, `pieces`: when streamed, the content in this many pieces (default 8), this far apart;
   * `cutAfter`: the stream ends ([DONE]) after that many pieces, without a finish_reason
   */
  | { kind: "answer"; content?: string; delayMs?: number; chunkMs?: number; pieces?: number; cutAfter?: number }
  | { kind: "error"; status: number; type: string; code: string | null; message: string; retryAfter?: string }
  | { kind: "hang" }
  | { kind: "gateway" };

export interface SeenRequest {
  at: number;
  auth: string | null;
  body: {
    model: string; messages: { role: string; content: string }[]; response_format?: unknown;
    stream?: boolean; stream_options?: { include_usage?: boolean };
  };
  /** how the exchange ended: answered, or the client went away first (an abort, a timeout) */
  ended?: "answered" | "client_aborted";
}

export const GOOD = { tags: ["keyboards", "deals"], score: 80, reason: "asks about a price drop" };

/** Steps for the common cases, in OpenAI's own wording and codes. */
export const steps = {
  answer: (content: unknown = GOOD, delayMs = 0): Step => ({ kind: "answer", content: typeof content === "string" ? content : JSON.stringify(content), delayMs }),
  /** Streamed (to a client asking for it) in `pieces` pieces `chunkMs` apart. */
  streamed: (content: unknown = GOOD, chunkMs = 100, pieces = 8): Step => ({
    kind: "answer", content: typeof content === "string" ? content : JSON.stringify(content), chunkMs, pieces,
  }),
  rateLimited: (retryAfter?: string): Step => ({
    kind: "error", status: 429, type: "requests", code: "rate_limit_exceeded", retryAfter,
    message: "Rate limit reached for requests per min (RPM). Please try again later.",
  }),
  overloaded: (retryAfter?: string): Step => ({
    kind: "error", status: 503, type: "server_error", code: null, retryAfter,
    message: "The engine is currently overloaded, please try again later",
  }),
  serverError: (): Step => ({ kind: "error", status: 500, type: "server_error", code: null, message: "The server had an error while processing your request." }),
  badRequest: (): Step => ({
    kind: "error", status: 400, type: "invalid_request_error", code: "model_not_found",
    message: "The model `m` does not exist or you do not have access to it.",
  }),
  hang: (): Step => ({ kind: "hang" }),
  gateway: (): Step => ({ kind: "gateway" }),
};

const tokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

export function fakeOpenAI() {
  const scripts = new Map<string, Step[]>();
  const requests: SeenRequest[] = [];

  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0, // a hang lasts until the client leaves, not until Bun's idle timer
    async fetch(req) {
      if (new URL(req.url).pathname !== "/v1/chat/completions" || req.method !== "POST")
        return Response.json({ error: { message: "Unknown request URL", type: "invalid_request_error", param: null, code: "unknown_url" } }, { status: 404 });
      const seen: SeenRequest = { at: Date.now(), auth: req.headers.get("authorization"), body: (await req.json()) as SeenRequest["body"] };
      requests.push(seen);
      const user = seen.body.messages.at(-1)?.content ?? "";
      const step = scripts.get(user)?.shift() ?? steps.answer();
      const aborted = new Promise<void>((r) => req.signal.addEventListener("abort", () => r(), { once: true }));
      const end = (how: SeenRequest["ended"]) => (seen.ended ??= how);
      switch (step.kind) {
        case "hang":
          await aborted;
          end("client_aborted");
          return new Response(null, { status: 499 });
        case "gateway":
          end("answered");
          return new Response(
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            { status: 502, headers: { "content-type": "text/html" } },
          );
        case "error":
          end("answered");
          return Response.json(
            { error: { message: step.message, type: step.type, param: null, code: step.code } },
            { status: step.status, headers: step.retryAfter ? { "retry-after": step.retryAfter } : {} },
          );
        case "answer": {
          if (step.delayMs) {
            const timer = new Promise<"late">((r) => setTimeout(() => r("late"), step.delayMs));
            if ((await Promise.race([timer, aborted.then(() => "gone" as const)])) === "gone") {
              end("client_aborted");
              return new Response(null, { status: 499 });
            }
          }
          const content = step.content ?? JSON.stringify(GOOD);
          const prompt = tokens(seen.body.messages.map((m) => m.content).join(" "));
          const completion = tokens(content);
          const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
          if (seen.body.stream) return streamAnswer(seen, content, usage, step, req.signal, end);
          end("answered");
          return Response.json({
            id: `chatcmpl-${randomBytes(12).toString("base64url")}`,
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model: seen.body.model,
            system_fingerprint: "fp_fake",
            choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: "stop" }],
            usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
          });
        }
      }
    },
  });

  return {
    baseUrl: `http://127.0.0.1:${server.port}/v1`,
    requests,
    /** The next replies to a request whose user message is `content`; then the default good answer. */
    script(content: string, ...next: Step[]) {
      scripts.set(content, [...(scripts.get(content) ?? []), ...next]);
    },
    /** Requests whose user message is `content`. */
    for: (content: string) => requests.filter((r) => r.body.messages.at(-1)?.content === content),
    stop: () => server.stop(true),
  };
}

/** A streamed answer: SSE chunks as OpenAI sends them; stops writing when the client goes away. */
function streamAnswer(
  seen: SeenRequest, content: string, usage: object, step: { chunkMs?: number; pieces?: number; cutAfter?: number }, signal: AbortSignal,
  end: (how: SeenRequest["ended"]) => void,
): Response {
  const id = `chatcmpl-${randomBytes(12).toString("base64url")}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
    id, object: "chat.completion.chunk", created, model: seen.body.model, system_fingerprint: "fp_fake",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra,
  });
  const n = Math.max(1, step.pieces ?? 8);
  const size = Math.ceil(content.length / n);
  const pieces: string[] = [];
  for (let i = 0; i < content.length; i += size) pieces.push(content.slice(i, i + size));
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (v: unknown) => controller.enqueue(enc.encode(`data: ${typeof v === "string" ? v : JSON.stringify(v)}\n\n`));
      send(chunk({ role: "assistant", content: "" }, null));
      for (const [i, piece] of pieces.entries()) {
        if (step.cutAfter !== undefined && i >= step.cutAfter) {
          send("[DONE]"); // cut short, as llama-cpp-python's interrupt_requests does
          end("answered");
          return controller.close();
        }
        if (step.chunkMs) await new Promise((r) => setTimeout(r, step.chunkMs));
        if (signal.aborted) {
          end("client_aborted");
          return controller.close();
        }
        send(chunk({ content: piece }, null));
      }
      send(chunk({}, "stop"));
      if (seen.body.stream_options?.include_usage) send({ ...chunk({}, null), choices: [], usage });
      send("[DONE]");
      end("answered");
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
}

/** An HTTP date `ms` from now, as a Retry-After header carries it (second resolution). */
export const httpDateIn = (ms: number) => new Date(Date.now() + ms).toUTCString();
