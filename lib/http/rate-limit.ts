// Per-tenant rate limit of POST /tasks (lib/tenancy/rate-limit.ts: a token bucket in Redis).
// Headers follow draft-ietf-httpapi-ratelimit-headers-06 (the last revision with separate fields):
// RateLimit-Limit (the bucket size), RateLimit-Remaining (whole tokens left), RateLimit-Reset
// (seconds until the bucket is full again), RateLimit-Policy (`<burst>;w=<seconds to refill it>`),
// on every answer to a rate-limited tenant; a refusal is 429 JSON with Retry-After.
import { Elysia } from "elysia";
import type { RateDecision, RateLimiter } from "../tenancy/rate-limit.ts";

function headers(d: Exclude<RateDecision, { kind: "unlimited" }>): Record<string, string> {
  return {
    "ratelimit-limit": String(d.burst),
    "ratelimit-remaining": String(d.remaining),
    "ratelimit-reset": String(Math.ceil(d.fullMs / 1000)),
    "ratelimit-policy": `${d.burst};w=${Math.max(1, Math.ceil(d.burst / d.ratePerSecond))}`,
  };
}

export function rateLimitPlugin(deps: { limiter?: RateLimiter; retryAfterSeconds: number }) {
  return new Elysia({ name: "rate-limit" }).onBeforeHandle({ as: "global" }, async (ctx) => {
    const { request, set, route } = ctx;
    const tenant = (ctx as { tenant?: string }).tenant;
    // By the route the router chose, not the URL's path: POST /tasks/ and /tasks/?a=1 are the submit
    // route too, and a path compared by hand let them past the limit.
    if (!deps.limiter || !tenant || request.method !== "POST" || route !== "/tasks") return;
    let d: RateDecision;
    try {
      d = await deps.limiter.take(tenant);
    } catch {
      set.status = 503;
      set.headers["retry-after"] = String(deps.retryAfterSeconds);
      return { error: "redis_unavailable", message: "Redis is unavailable; retry later" };
    }
    if (d.kind === "unlimited") return;
    const h = headers(d);
    if (d.kind === "refused") {
      const retry = String(Math.max(1, Math.ceil(d.retryMs / 1000)));
      return new Response(
        JSON.stringify({ error: "rate_limited", message: `tenant ${tenant} is over its rate of ${d.ratePerSecond}/s (burst ${d.burst}); retry in ${retry} s` }),
        { status: 429, headers: { "content-type": "application/json", "retry-after": retry, ...h } },
      );
    }
    Object.assign(set.headers, h);
  });
}
