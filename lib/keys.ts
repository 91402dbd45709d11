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
