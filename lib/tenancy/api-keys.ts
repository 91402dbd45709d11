// API keys and tenant limits. A key is `ak_<id>_<secret>`: the id finds its record, the secret is
// 32 random bytes of which only the SHA-256 is stored (a high-entropy secret needs no slow hash: no
// dictionary to try). The key itself is shown once, by `create`, and never stored or logged.
// Limits belong to the tenant (all its keys share them): rate and burst of POST /tasks, and how many
// of its tasks may run at once across all workers.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { tenancyKeys, type TenancyKeys } from "../keys.ts";
import type { Redis } from "../scripts.ts";
import { hashOf, on } from "./scripts.ts";

export const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const KEY_PATTERN = /^ak_([0-9a-f]{12})_([0-9a-f]{64})$/;

export interface TenantLimits {
  /** POST /tasks per second (token refill rate) */
  rate?: number;
  /** bucket size: POSTs allowed at once after a quiet period */
  burst?: number;
  /** tasks of this tenant running at once on all workers together */
  concurrency?: number;
}

export interface ApiKeyInfo {
  id: string;
  tenant: string;
  created_at: string;
  revoked_at?: string;
}

export class InvalidTenantError extends Error {
  override name = "InvalidTenantError";
}

const sha256 = (s: string) => createHash("sha256").update(s).digest();

export class ApiKeys {
  readonly keys: TenancyKeys;
  constructor(readonly redis: Redis, prefix = "") {
    this.keys = tenancyKeys(prefix);
  }

  /** A new key for `tenant`; the only time the full key exists outside its holder. */
  async create(tenant: string, limits: TenantLimits = {}): Promise<{ id: string; key: string }> {
    if (!TENANT_PATTERN.test(tenant)) throw new InvalidTenantError(`tenant must match ${TENANT_PATTERN}, got ${JSON.stringify(tenant)}`);
    const id = randomBytes(6).toString("hex");
    const secret = randomBytes(32).toString("hex");
    await on(this.redis, "HSET", this.keys.apiKey(id), "tenant", tenant, "sha256", sha256(secret).toString("hex"), "created_at", Date.now());
    await on(this.redis, "SADD", this.keys.apiKeys, id);
    await this.setLimits(tenant, limits);
    return { id, key: `ak_${id}_${secret}` };
  }

  /** The key's tenant, or null for an unknown, malformed or revoked key. Compares in constant time. */
  async verify(key: string): Promise<{ id: string; tenant: string } | null> {
    const m = KEY_PATTERN.exec(key);
    if (!m) return null;
    const [, id, secret] = m as unknown as [string, string, string];
    const rec = hashOf(await on(this.redis, "HGETALL", this.keys.apiKey(id)));
    if (!rec?.sha256 || rec.revoked_at || !rec.tenant) return null;
    const want = Buffer.from(rec.sha256, "hex");
    const got = sha256(secret);
    return want.length === got.length && timingSafeEqual(want, got) ? { id, tenant: rec.tenant } : null;
  }

  /** Marks a key revoked (kept for `list`). False when no such key exists. */
  async revoke(id: string): Promise<boolean> {
    if (Number(await on(this.redis, "EXISTS", this.keys.apiKey(id))) !== 1) return false;
    await on(this.redis, "HSET", this.keys.apiKey(id), "revoked_at", Date.now());
    return true;
  }

  async get(id: string): Promise<ApiKeyInfo | null> {
    const rec = hashOf(await on(this.redis, "HGETALL", this.keys.apiKey(id)));
    if (!rec?.tenant) return null;
    const iso = (ms: string) => new Date(Number(ms)).toISOString();
    return { id, tenant: rec.tenant, created_at: iso(rec.created_at!), ...(rec.revoked_at ? { revoked_at: iso(rec.revoked_at) } : {}) };
  }

  async list(): Promise<(ApiKeyInfo & { limits: TenantLimits })[]> {
    const ids = (await on<string[]>(this.redis, "SMEMBERS", this.keys.apiKeys)).sort();
    const out: (ApiKeyInfo & { limits: TenantLimits })[] = [];
    for (const id of ids) {
      const info = await this.get(id);
      if (info) out.push({ ...info, limits: await this.limits(info.tenant) });
    }
    return out;
  }

  /**
   * Sets the tenant's limits: a number sets one, 0 removes it (unlimited), undefined leaves it as is.
   * A burst defaults to the rate rounded up (at least 1).
   */
  async setLimits(tenant: string, limits: TenantLimits): Promise<TenantLimits> {
    if (!TENANT_PATTERN.test(tenant)) throw new InvalidTenantError(`tenant must match ${TENANT_PATTERN}, got ${JSON.stringify(tenant)}`);
    const key = this.keys.tenantLimits(tenant);
    for (const field of ["rate", "burst", "concurrency"] as const) {
      const v = limits[field];
      if (v === undefined) continue;
      if (v > 0) await on(this.redis, "HSET", key, field, v);
      else await on(this.redis, "HDEL", key, field);
    }
    await on(this.redis, "SADD", this.keys.tenants, tenant);
    return this.limits(tenant);
  }

  async limits(tenant: string): Promise<TenantLimits> {
    const h = hashOf(await on(this.redis, "HGETALL", this.keys.tenantLimits(tenant)));
    const out: TenantLimits = {};
    if (h.rate) out.rate = Number(h.rate);
    if (h.rate || h.burst) out.burst = h.burst ? Number(h.burst) : Math.max(1, Math.ceil(Number(h.rate)));
    if (h.concurrency) out.concurrency = Number(h.concurrency);
    return out;
  }

  async tenants(): Promise<string[]> {
    return (await on<string[]>(this.redis, "SMEMBERS", this.keys.tenants)).sort();
  }
}
