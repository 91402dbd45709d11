// Per-tenant rate limit of POST /tasks: a token bucket in Redis (lua/tenant-bucket.lua), refilled
// at the tenant's rate up to its burst, on Redis's clock, so it is exact across API replicas.
import { tenancyKeys, type TenancyKeys } from "../keys.ts";
import type { Redis } from "../scripts.ts";
import { runTenancyScript } from "./scripts.ts";

export type RateDecision =
  | { kind: "unlimited" }
  | { kind: "allowed" | "refused"; remaining: number; retryMs: number; fullMs: number; burst: number; ratePerSecond: number };

export class RateLimiter {
  readonly keys: TenancyKeys;
  constructor(readonly redis: Redis, prefix = "") {
    this.keys = tenancyKeys(prefix);
  }

  async take(tenant: string, cost = 1): Promise<RateDecision> {
    const r = (await runTenancyScript(this.redis, "tenant-bucket", [this.keys.tenantLimits(tenant), this.keys.tenantBucket(tenant)], [cost])) as [number, number, number, number, number, string];
    if (r[0] === 2) return { kind: "unlimited" };
    // The rate comes as its stored string: exact, where an integer from Lua would be truncated.
    return { kind: r[0] === 1 ? "allowed" : "refused", remaining: r[1], retryMs: r[2], fullMs: r[3], burst: r[4], ratePerSecond: Number(r[5]) };
  }
}
