// Every Redis key this system writes is built here, under one optional prefix (REDIS_PREFIX),
// so tests and deployments sharing a Redis never see each other's keys.
export interface Keys {
  /** HASH: the task record (status, user_id, attempts, owner, lease_until, result, error, times). */
  task(id: string): string;
  /** STRING: the status alone, as the original Python service kept it (`task:{id}:status`). */
  legacyStatus(id: string): string;
  /** ZSET id -> accepted_at ms: tasks whose publish to RocketMQ is not yet confirmed. */
  outbox: string;
  /** HASH id -> request message body, for re-publishing what the outbox still holds. */
  outboxBodies: string;
  /** LIST of JSON entries: messages set aside because they could never be processed. */
  deadLetters: string;
  /** STRING: lock held by the API instance sweeping the outbox. */
  outboxLock: string;
  /**
   * ZSET id -> ms: running or retrying tasks, and when to re-publish one not heard of by then (its
   * worker died and RocketMQ lost its message). Finished and queued tasks are not in it.
   */
  stalled: string;
}

export function keys(prefix = ""): Keys {
  return {
    task: (id) => `${prefix}task:${id}`,
    legacyStatus: (id) => `${prefix}task:${id}:status`,
    outbox: `${prefix}outbox`,
    outboxBodies: `${prefix}outbox:bodies`,
    deadLetters: `${prefix}dead-letters`,
    outboxLock: `${prefix}outbox:lock`,
    stalled: `${prefix}stalled`,
  };
}

/**
 * Keys of tenants, API keys and LLM budgets (lib/tenancy). Every key one tenancy script touches
 * shares one hash tag (`{tenant:<name>}`, `{llm:<model>}`), so each script runs on Redis Cluster.
 */
export function tenancyKeys(prefix = "") {
  return {
    /** HASH: tenant, sha256 (of the secret), created_at, revoked_at? (one API key; never the key itself) */
    apiKey: (id: string) => `${prefix}apikey:${id}`,
    /** SET of API key ids, for `keys.ts list` */
    apiKeys: `${prefix}apikeys`,
    /** SET of tenant names with limits, for `keys.ts list` and the workers' tenancy reaper */
    tenants: `${prefix}tenants`,
    /** HASH: rate (tasks/s), burst, concurrency (unset: unlimited) */
    tenantLimits: (tenant: string) => `${prefix}{tenant:${tenant}}:limits`,
    /** HASH: tokens, ts (ms): the tenant's POST /tasks token bucket */
    tenantBucket: (tenant: string) => `${prefix}{tenant:${tenant}}:bucket`,
    /** ZSET task id -> ms until which the slot is held (running, or reserved for a released task) */
    tenantRunning: (tenant: string) => `${prefix}{tenant:${tenant}}:running`,
    /** ZSET task id -> ms parked: tasks received while the tenant was at its concurrency, oldest first */
    tenantParked: (tenant: string) => `${prefix}{tenant:${tenant}}:parked`,
    /** STRING: lock of the worker running the tenancy reaper */
    tenancyReaperLock: `${prefix}tenancy:reaper:lock`,
    /** HASH: rpm_tat, tpm_tat (ms, Redis clock): the fleet's LLM budget of one model */
    llmBudget: (model: string) => `${prefix}{llm:${model}}:budget`,
  };
}
export type TenancyKeys = ReturnType<typeof tenancyKeys>;
