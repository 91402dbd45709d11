// Concurrency per tenant across the fleet, with fair share. A tenant with a concurrency limit C never
// has more than C tasks running on all workers together, and its backlog does not hold back others:
// - a worker receiving a task of a tenant at its limit *parks* it (Redis zset per tenant, oldest
//   first) and acks its message. The task stays `queued`; its request body stays in the task record.
//   Acking is the point: a parked task costs no RocketMQ delivery, so waiting never moves it toward
//   the DLQ, and the topic drains past a big backlog to other tenants' tasks at the speed of a
//   Redis call and an ack per message;
// - when a run of that tenant ends, the worker frees the slot and releases the oldest parked task:
//   the slot is reserved for it and its request message re-published from the task record;
// - a reaper (every worker, one at a time through a lock) extends the slots of tasks still running
//   under a live lease, frees those of dead workers, parks again a released task whose reserved slot
//   ran out while it still waits (its release never sent it), and releases parked tasks into free
//   slots (a release missed by a crash). It also renews the TTL
//   of parked tasks' records (a quarter of TASK_TTL_SECONDS apart): a tenant whose slots stay full
//   for longer than that TTL must not lose the tasks that wait for them (lib/lua/keep.lua).
// Admission and release are Lua scripts under the tenant's hash tag (lua/tenant-*.lua), so the count
// is exact across workers and the scripts run on Redis Cluster. Tenants without a limit skip all this.
import { toError } from "../errors.ts";
import { keys as taskKeys, tenancyKeys, type TenancyKeys } from "../keys.ts";
import type { Logger } from "../log.ts";
import type { Config } from "../config.ts";
import { REQUEST_TAG } from "../model.ts";
import type { Publisher } from "../mq.ts";
import type { Redis } from "../scripts.ts";
import type { TaskStore } from "../store.ts";
import { on, runTenancyScript } from "./scripts.ts";

export type Admission = "unlimited" | "admitted" | "already" | "parked";
const ADMISSION: Record<number, Admission> = { 2: "unlimited", 1: "admitted", 3: "already", 0: "parked" };
/** Parked tasks released per freed slot check at most (a removed limit releases in batches). */
const RELEASE_BATCH = 100;

export interface TenantSlotsOptions {
  /** how long a new slot is held before the reaper looks at it (the claim's lease) */
  holdMs: number;
  /** how long a slot stays reserved for a released task whose message is on its way */
  reserveMs: number;
  /** sends a task's request message again (to the request topic) */
  publish(taskId: string, body: Buffer): Promise<void>;
  /**
   * renews a parked task's record (TaskStore.keepWaiting), every `everyMs` at most, and marks a task
   * parked again by the reaper (`park`); unset: neither
   */
  keep?: { everyMs: number; record(taskId: string, park?: boolean): Promise<unknown> };
  log: Logger;
}
/** Parked tasks whose records are renewed at once (one Lua call each, in parallel). */
const KEEP_PAGE = 500;

export class TenantSlots {
  readonly keys: TenancyKeys;
  readonly #task: (id: string) => string;
  constructor(readonly redis: Redis, prefix: string, private readonly opts: TenantSlotsOptions) {
    this.keys = tenancyKeys(prefix);
    this.#task = taskKeys(prefix).task;
  }

  #keys(tenant: string) {
    return [this.keys.tenantLimits(tenant), this.keys.tenantRunning(tenant), this.keys.tenantParked(tenant)];
  }

  async admit(tenant: string, taskId: string): Promise<Admission> {
    const r = await runTenancyScript(this.redis, "tenant-admit", this.#keys(tenant), [taskId, this.opts.holdMs]);
    return ADMISSION[Number(r)] ?? "unlimited";
  }

  /** Frees `taskId`'s slot ("" none) and re-publishes the parked tasks given its free slots. Returns how many. */
  async release(tenant: string, taskId = ""): Promise<number> {
    let sent = 0;
    let free = taskId;
    for (let round = 0; round < 1_000; round++) {
      // Taken off the parked set, each with a slot reserved: from here until its publish, a task's only
      // trace in the tenant's keys is that reservation (a crash here is repaired by #expire).
      const ids = (await runTenancyScript(this.redis, "tenant-release", this.#keys(tenant), [free, this.opts.reserveMs, RELEASE_BATCH])) as string[];
      if (ids.length === 0) return sent;
      free = "";
      const finished: string[] = [];
      for (const [i, id] of ids.entries()) {
        try {
          const [status, body] = await on<(string | null)[]>(this.redis, "HMGET", this.#task(id), "status", "message");
          if (!body) {
            // Parking made sure the record was there (lib/worker/tenant-limits.ts) and the reaper renews
            // it (#keepParked); one gone since was lost by Redis (a crash, an eviction), or expired while
            // no worker ran the reaper for TASK_TTL_SECONDS: say so loudly.
            if (status) this.opts.log.info("parked task no longer waits (finished): skipped", { task_id: id, tenant, status });
            else this.opts.log.warn("parked task lost: its record is gone from Redis", { task_id: id, tenant });
            finished.push(id);
            continue;
          }
          // Unmarked first (keep.lua): should this copy be lost, a delayed or retried task's stalled
          // hint sends it again.
          await on(this.redis, "HDEL", this.#task(id), "parked");
          await this.opts.publish(id, Buffer.from(body, "utf8"));
          sent++;
          this.opts.log.info("parked task released", { task_id: id, tenant });
        } catch (e) {
          // This one and the rest of the batch go back, first in line, their slots freed: the reaper
          // retries the release later. Should Redis refuse that too, their reservations run out and
          // the reaper parks them again then (#expire).
          const back = ids.slice(i);
          await this.#repark(tenant, back).catch(() => {});
          this.opts.log.warn("parked task not re-published; parked again", { task_id: id, tenant, parked_again: back.length, error: toError(e) });
          return sent;
        }
      }
      // Tasks that finished meanwhile give their reserved slots straight back, to the next in line.
      if (finished.length === 0) return sent;
      await on(this.redis, "ZREM", this.keys.tenantRunning(tenant), ...finished);
    }
    return sent;
  }

  async #repark(tenant: string, ids: string[]): Promise<void> {
    await on(this.redis, "ZADD", this.keys.tenantParked(tenant), "NX", ...ids.flatMap((id) => [0, id]));
    await on(this.redis, "ZREM", this.keys.tenantRunning(tenant), ...ids);
  }

  /**
   * One pass of the reaper over every tenant: slots past their time are extended while their task
   * runs under a live lease, freed otherwise; free slots go to parked tasks. Never throws.
   */
  async reap(lockMs = 4_000): Promise<void> {
    try {
      if ((await on(this.redis, "SET", this.keys.tenancyReaperLock, "1", "NX", "PX", lockMs)) !== "OK") return;
      const keep = this.opts.keep && Number(await on(this.redis, "EXISTS", this.keys.parkedKept)) === 0 ? this.opts.keep : undefined;
      for (const tenant of await on<string[]>(this.redis, "SMEMBERS", this.keys.tenants)) {
        const [nowText, ...expired] = (await runTenancyScript(this.redis, "tenant-expire", [this.keys.tenantRunning(tenant)], ["list", "", 0])) as string[];
        const now = Number(nowText);
        for (const id of expired) await this.#expire(tenant, id, now);
        if (keep) await this.#keepParked(tenant, keep.record);
        await this.release(tenant);
      }
      // Marked only once every tenant's were renewed: a pass that failed midway is retried next time.
      if (keep) await on(this.redis, "SET", this.keys.parkedKept, "1", "PX", keep.everyMs);
    } catch (e) {
      this.opts.log.warn("tenancy reaper: pass failed; will try again", { error: toError(e) });
    }
  }

  /**
   * A slot held past its time (seen at `now`): extended while its task runs under a live lease, freed
   * otherwise. A task that still waits (queued or scheduled) is parked again in the same step: its slot
   * was reserved by a release, and a worker that died before that release's publish, or a publish
   * whose error Redis did not take, left it nowhere else (its message was acked when it was parked).
   * Should its message only be late instead (a backlog longer than the reservation), the copy sent
   * again is a duplicate, which its claim absorbs.
   */
  async #expire(tenant: string, id: string, now: number): Promise<void> {
    const [status, leaseUntil] = await on<(string | null)[]>(this.redis, "HMGET", this.#task(id), "status", "lease_until");
    const lease = Number(leaseUntil ?? 0);
    const running = this.keys.tenantRunning(tenant);
    if (status === "running" && lease > now) {
      await runTenancyScript(this.redis, "tenant-expire", [running], ["extend", id, lease]);
      return;
    }
    const waits = status === "queued" || status === "scheduled";
    const keys = waits ? [running, this.keys.tenantParked(tenant)] : [running];
    if ((await runTenancyScript(this.redis, "tenant-expire", keys, ["drop", id, now, waits ? "park" : ""])) !== 1) return;
    if (!waits) {
      this.opts.log.warn("tenant slot freed: its run ended without a release, or its released message never came", { task_id: id, tenant, status });
      return;
    }
    // Marked parked, so the stalled check leaves it to its release (keep.lua).
    await this.opts.keep?.record(id, true);
    this.opts.log.warn("released task not seen before its reserved slot ran out: parked again", { task_id: id, tenant, status });
  }

  /** Renews the records of a tenant's parked tasks, a page at a time (a release may take some meanwhile). */
  async #keepParked(tenant: string, record: (taskId: string) => Promise<unknown>): Promise<void> {
    const parked = this.keys.tenantParked(tenant);
    for (let from = 0; ; from += KEEP_PAGE) {
      const ids = await on<string[]>(this.redis, "ZRANGE", parked, from, from + KEEP_PAGE - 1);
      await Promise.all(ids.map(record));
      if (ids.length < KEEP_PAGE) return;
    }
  }
}

/** The worker's slots: held for a claim's lease, parked tasks re-published to the request topic. */
export function tenantSlotsFor(cfg: Config, redis: Redis, publisher: Publisher, store: TaskStore, log: Logger): TenantSlots {
  return new TenantSlots(redis, cfg.REDIS_PREFIX, {
    holdMs: cfg.MQ_INVISIBLE_MS,
    reserveMs: cfg.MQ_INVISIBLE_MS,
    publish: async (id, body) => void (await publisher.send({ topic: cfg.MQ_TOPIC_REQUEST, tag: REQUEST_TAG, key: id, body })),
    keep: { everyMs: (cfg.TASK_TTL_SECONDS * 1000) / 4, record: (id, park) => store.keepWaiting(id, park) },
    log,
  });
}
