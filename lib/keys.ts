// Every Redis key this system writes is built here, under one optional prefix P (REDIS_PREFIX), so
// tests and deployments sharing a Redis never see each other's keys. The layout is the same on one
// node and on Redis Cluster:
// - Per task, one hash tag: the original Python service's status key itself, `{P task:<id>:status}`.
//   The status key `P task:<id>:status` (no braces, byte-identical to the original's) hashes to the
//   same slot as that tag, so every per-task script touches keys of ONE slot, and the original's
//   workers still find the status where they read and write it.
// - Global sets are split into REDIS_BUCKETS buckets, each under its own tag `{P bucket:<n>}`. A
//   per-task script cannot touch them (another slot), so they only hold *hints*: written before the
//   per-task transition that needs them, verified against the task by whoever reads them.
export interface Keys {
  /** the hash tag every key of this task shares */
  tag(id: string): string;
  /** HASH: the task record (status, user_id, attempts, owner, lease_until, result, error, times, ...). */
  task(id: string): string;
  /** STRING: the status alone, as the original Python service kept it (`P task:<id>:status`). */
  legacyStatus(id: string): string;
  /**
   * LIST: the task's events (`status` per transition, `progress` per report) as `<n> <type> <data>`,
   * capped, expiring with the task; written by the transition scripts (lib/lua/include/events.lua),
   * read by SSE (lib/lua/events-read.lua).
   */
  events(id: string): string;
  /**
   * STRING (ms, Redis clock; TTL DEAD_LETTER_TTL_SECONDS + 1 h): an operator re-queued this task
   * (lib/lua/requeue.lua). Outlives the task's record, so that a dead letter replayed after the record
   * expired is not recorded anew and run a second time.
   */
  replayed(id: string): string;
  /** pub/sub channel on which every event's task id is announced (`P events`; lib/tasks/notices.ts) */
  eventsChannel: string;
  /** The bucket a task's hints go to. */
  bucketOf(id: string): number;
  /** ZSET id -> accepted at (ms, Redis clock): hints of tasks whose request message may be unsent. */
  outbox(bucket: number): string;
  /** ZSET id -> when to look at it (ms): hints of running or retrying tasks, for the reaper. */
  stalled(bucket: number): string;
  /** how many buckets there are */
  buckets: number;
  /** LIST of JSON entries: messages set aside because they could never be processed (capped, with a TTL). */
  deadLetters: string;
  /** STRING: lock held by the API instance sweeping the outbox. */
  outboxLock: string;
  /** ZSET worker id -> last announcement (ms): the index of live workers (lib/ops/workers.ts) */
  workers: string;
  /** STRING (JSON, with a TTL): one worker's announcement; gone when it stops announcing */
  worker(id: string): string;
  /** HASH (TTL 2 h): one minute's finish counters and latency buckets, by minute since the epoch (lib/ops/minutes.ts) */
  minute(epochMinute: number): string;
  /** LIST of task ids, newest first, capped: recent final failures, for the dashboard (lib/ops/recorder.ts) */
  recentFailures: string;
  /**
   * HASH: one Idempotency-Key of one (tenant, user) (lib/state/idempotency.ts): fp (body fingerprint),
   * task_id, state, at. `scope` is a hash of tenant, user_id and the key (fixed length, no braces, no
   * user text in key names); one key per script call, its own hash tag.
   */
  idempotency(scope: string): string;
  /** pub/sub channel: ids of running tasks whose cancellation was asked (lib/worker/cancel-watch.ts) */
  cancelChannel: string;
  /**
   * ZSET task id -> created at (ms): one user's tasks, for GET /tasks (lib/state/user-index.ts). Its
   * own hash tag per user, `{P user:<tenant>:<user_id>}` (braces in the names escaped): a hint
   * written beside the task's create (another slot), checked against the task on every read.
   */
  userTasks(tenant: string, userId: string): string;
  /** STRING (TTL: the session's remaining life): a dashboard session ended by its logout (lib/http/dashboard-session.ts) */
  dashboardRevoked(nonce: string): string;
}

/** `{`, `}` (which would cut a hash tag short) and `%` itself, percent-encoded. */
const escapeTag = (s: string) => s.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Hash tags are cut at the first `{`/`}`: a prefix with braces would split a task's keys over slots. */
export function checkPrefix(prefix: string): string | undefined {
  return /[{}]/.test(prefix) ? "must not contain { or } (they would change the Redis Cluster hash tags)" : undefined;
}

/** FNV-1a, 32 bits: a stable, cheap hash of the id (any process, any language can compute it). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function keys(prefix = "", buckets = 16): Keys {
  const problem = checkPrefix(prefix);
  if (problem) throw new Error(`REDIS_PREFIX ${JSON.stringify(prefix)} ${problem}`);
  const n = Math.max(1, Math.floor(buckets));
  const tag = (id: string) => `{${prefix}task:${id}:status}`;
  const bucketTag = (b: number) => `{${prefix}bucket:${b}}`;
  return {
    tag,
    task: (id) => `${tag(id)}:task`,
    legacyStatus: (id) => `${prefix}task:${id}:status`,
    events: (id) => `${tag(id)}:events`,
    replayed: (id) => `${tag(id)}:replayed`,
    eventsChannel: `${prefix}events`,
    bucketOf: (id) => fnv1a(id) % n,
    outbox: (b) => `${bucketTag(b)}:outbox`,
    stalled: (b) => `${bucketTag(b)}:stalled`,
    buckets: n,
    deadLetters: `${prefix}dead-letters`,
    outboxLock: `${prefix}outbox:lock`,
    workers: `${prefix}workers`,
    worker: (id) => `${prefix}worker:${id}`,
    minute: (m) => `${prefix}ops:minute:${m}`,
    recentFailures: `${prefix}ops:failures`,
    idempotency: (scope) => `{${prefix}idem:${scope}}`,
    cancelChannel: `${prefix}cancel`,
    // Tenant names have no `:` (TENANT_PATTERN), so tenant and user id cannot run into each other.
    userTasks: (tenant, userId) => `{${prefix}user:${escapeTag(tenant)}:${escapeTag(userId)}}:tasks`,
    // The nonce is base64url (checked with the cookie's MAC before any key is built): no braces.
    dashboardRevoked: (nonce) => `${prefix}dashboard:revoked:${nonce}`,
  };
}

/**
 * Keys of tenants, API keys and LLM budgets (lib/tenancy). Every key one tenancy script touches
 * shares one hash tag (`{P tenant:<name>}`, `{P llm:<model>}`, the prefix inside it as for tasks), so
 * each script runs on Redis Cluster.
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
    tenantLimits: (tenant: string) => `{${prefix}tenant:${tenant}}:limits`,
    /** HASH: tokens, ts (ms): the tenant's POST /tasks token bucket */
    tenantBucket: (tenant: string) => `{${prefix}tenant:${tenant}}:bucket`,
    /** ZSET task id -> ms until which the slot is held (running, or reserved for a released task) */
    tenantRunning: (tenant: string) => `{${prefix}tenant:${tenant}}:running`,
    /** ZSET task id -> ms parked: tasks received while the tenant was at its concurrency, oldest first */
    tenantParked: (tenant: string) => `{${prefix}tenant:${tenant}}:parked`,
    /** STRING: lock of the worker running the tenancy reaper */
    tenancyReaperLock: `${prefix}tenancy:reaper:lock`,
    /** STRING (TTL a quarter of TASK_TTL_SECONDS): parked tasks' records were renewed; renewed again when it is gone */
    parkedKept: `${prefix}tenancy:parked:kept`,
    /** HASH: rpm_tat, tpm_tat (ms, Redis clock): the fleet's LLM budget of one model */
    llmBudget: (model: string) => `{${prefix}llm:${model}}:budget`,
  };
}
export type TenancyKeys = ReturnType<typeof tenancyKeys>;
