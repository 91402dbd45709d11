// Small typed errors. HTTP-facing ones carry their status; code never matches on error text.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** A dependency (Redis, RocketMQ) could not take the request: the client may retry later. */
export class UnavailableError extends HttpError {
  constructor(what: "redis" | "rocketmq", retryAfterSeconds: number, options?: { cause?: unknown }) {
    super(503, `${what}_unavailable`, `${what === "redis" ? "Redis" : "RocketMQ"} is unavailable; retry later`, {
      "retry-after": String(retryAfterSeconds),
    });
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The agent failed in a way that another attempt may fix (429, 5xx, timeout). */
export class RetryableAgentError extends Error {
  constructor(message: string, readonly retryAfterMs?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RetryableAgentError";
  }
}

/** The agent failed in a way no retry can fix (bad request, invalid answer). */
export class PermanentAgentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentAgentError";
  }
}

/** Anything thrown, as an Error; the original is kept as `cause`. */
export function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  return new Error(typeof e === "string" ? e : JSON.stringify(e), { cause: e });
}
