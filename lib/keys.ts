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
}

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
    bucketOf: (id) => fnv1a(id) % n,
    outbox: (b) => `${bucketTag(b)}:outbox`,
    stalled: (b) => `${bucketTag(b)}:stalled`,
    buckets: n,
    deadLetters: `${prefix}dead-letters`,
    outboxLock: `${prefix}outbox:lock`,
  };
}
