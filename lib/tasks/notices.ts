// Notices of task events, without polling: every event a transition script writes is announced on
// the channel `P events` with the task's id (lib/lua/include/events.lua). One subscriber per API
// process (per Redis client and prefix) listens, and wakes the requests waiting on that task: a
// `GET /tasks/:id?wait=N` or an SSE stream. A waiter re-reads the task (or its events) on each
// wake-up; it registers before its first read, so a notice between that read and its wait is not
// lost (the watch remembers it). A notice carries no state: losing one only delays a waiter until its
// next re-read, so after the subscriber reconnects every waiter is woken to re-read.
//
// Single node: a duplicate() of the client (a connection in subscribe mode takes no other command).
// Redis Cluster: the cluster client's own subscribe(), which node-redis runs on a dedicated pub/sub
// connection to one node; PUBLISH reaches every node of a cluster, so any node will do.
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { closeRedis } from "../redis.ts";
import { commandTimeout, isCluster, setCommandTimeout, type Redis, type SingleRedis } from "../scripts.ts";
import { withTimeout } from "../time.ts";

export type WakeReason = "notice" | "timeout" | "aborted" | "closed";

/** One waiter's registration: a notice arriving before next() is kept, so no wake-up is lost. */
export class Watch {
  #noticed = false;
  #wake?: (r: WakeReason) => void;
  #closed = false;
  constructor(private readonly onClose: (w: Watch) => void) {}

  /** @internal called by TaskNotices */
  notify(r: WakeReason = "notice") {
    if (r === "closed") this.#closed = true;
    if (this.#wake) this.#wake(r);
    else this.#noticed = true;
  }

  /** Resolves on the next notice (or one already received since the last call), after `ms`, on abort or close. */
  next(ms: number, signal?: AbortSignal): Promise<WakeReason> {
    if (this.#closed) return Promise.resolve("closed");
    if (signal?.aborted) return Promise.resolve("aborted");
    if (this.#noticed) {
      this.#noticed = false;
      return Promise.resolve("notice");
    }
    return new Promise<WakeReason>((resolve) => {
      const done = (r: WakeReason) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#wake = undefined;
        resolve(r);
      };
      const onAbort = () => done("aborted");
      const timer = setTimeout(() => done("timeout"), Math.max(0, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#wake = done;
    });
  }

  close() {
    this.#closed = true;
    this.#wake?.("closed");
    this.onClose(this);
  }
}

export class TaskNotices {
  readonly #waiters = new Map<string, Set<Watch>>();
  #subscribed?: Promise<void>;
  #sub?: SingleRedis;
  #closed = false;
  readonly #listener = (id: string | Buffer) => this.#notify(String(id));

  constructor(
    private readonly redis: Redis,
    readonly channel: string,
    private readonly log?: Logger,
  ) {}

  /** Registers a waiter on a task; close() it when done. */
  watch(id: string): Watch {
    const w = new Watch((x) => {
      const set = this.#waiters.get(id);
      set?.delete(x);
      if (set?.size === 0) this.#waiters.delete(id);
    });
    if (this.#closed) w.notify("closed");
    else {
      let set = this.#waiters.get(id);
      if (!set) this.#waiters.set(id, (set = new Set()));
      set.add(w);
    }
    return w;
  }

  /** Waiters on one task: tests and metrics. */
  waiting(id?: string): number {
    if (id) return this.#waiters.get(id)?.size ?? 0;
    let n = 0;
    for (const s of this.#waiters.values()) n += s.size;
    return n;
  }

  /**
   * Subscribes (once per process; again after a failure), waiting at most `ms`. False: not subscribed
   * (yet): a waiter then wakes only on its deadline or keepalive, which is still correct, only later.
   */
  async ready(ms: number): Promise<boolean> {
    if (this.#closed) return false;
    this.#subscribed ??= this.#subscribe().catch((e) => {
      this.#subscribed = undefined;
      this.log?.warn("task events: subscribe failed; waiters wake at their deadline only", { error: toError(e) });
      throw e;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
    try {
      return await Promise.race([this.#subscribed.then(() => true, () => false), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #subscribe(): Promise<void> {
    if (isCluster(this.redis)) {
      await this.redis.subscribe(this.channel, this.#listener);
      return;
    }
    if (!this.#sub) {
      const sub = (this.#sub = this.redis.duplicate() as SingleRedis);
      setCommandTimeout(sub, commandTimeout(this.redis)); // closeRedis's bound (close())
      let connected = false;
      sub.on("error", (e: Error) => this.log?.debug("task events subscriber: connection error", { error: e.message }));
      // After a reconnection, notices sent meanwhile are lost: every waiter re-reads.
      sub.on("ready", () => {
        if (connected) this.#wakeAll("notice");
        connected = true;
      });
    }
    const sub = this.#sub;
    if (!sub.isOpen) await sub.connect();
    await sub.subscribe(this.channel, this.#listener);
  }

  #notify(id: string) {
    for (const w of this.#waiters.get(id) ?? []) w.notify("notice");
  }

  #wakeAll(r: WakeReason) {
    for (const set of this.#waiters.values()) for (const w of [...set]) w.notify(r);
  }

  /**
   * Ends every wait (they answer with what they have) and drops the subscription. Bounded: with Redis
   * hung, a SUBSCRIBE or UNSUBSCRIBE never answered would keep node-redis's close() (it waits for every
   * command queued) or the cluster's unsubscribe waiting for ever, and the API's shutdown with it.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeAll("closed");
    this.#waiters.clear();
    if (this.#sub) return closeRedis(this.#sub); // destroys the connection past the command timeout
    if (!isCluster(this.redis)) return;
    // The cluster client's own pub/sub connection: closed with the client (closeRedis), not here.
    const bound = (commandTimeout(this.redis) ?? 2_000) + 500;
    await withTimeout(this.redis.unsubscribe(this.channel, this.#listener), bound, "unsubscribe").catch(() => {});
  }
}

// One TaskNotices per Redis client and channel, made on first use: a process that never waits opens
// no subscriber connection.
const hubs = new WeakMap<object, Map<string, TaskNotices>>();
const closedClients = new WeakSet<object>();

export function taskNotices(redis: Redis, channel: string, log?: Logger): TaskNotices {
  if (closedClients.has(redis)) {
    // Shutting down: a request that comes in now gets no subscription (it would hold the server's stop).
    const closed = new TaskNotices(redis, channel, log);
    void closed.close();
    return closed;
  }
  let byChannel = hubs.get(redis);
  if (!byChannel) hubs.set(redis, (byChannel = new Map()));
  let hub = byChannel.get(channel);
  if (!hub) byChannel.set(channel, (hub = new TaskNotices(redis, channel, log)));
  return hub;
}

/** Closes the notices of a Redis client (at shutdown, before the HTTP server stops: open streams end). */
export async function closeTaskNotices(redis: Redis): Promise<void> {
  closedClients.add(redis);
  const byChannel = hubs.get(redis);
  hubs.delete(redis);
  await Promise.all([...(byChannel?.values() ?? [])].map((h) => h.close()));
}
