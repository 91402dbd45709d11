// Cancellation notices for the runs of this worker process. POST /tasks/:id/cancel on a running task
// marks it in Redis (lib/lua/cancel.lua) and PUBLISHes its id on the cancel channel; every worker
// subscribes, and the one running the task aborts its agent through the run's AbortSignal at once
// (not at the next heartbeat). A notice lost (the subscriber reconnecting, a worker that subscribed
// late) is covered by the heartbeat, which sees the mark (lib/lua/heartbeat.lua), and by the next
// claim (lib/lua/claim.lua).
// The subscriber is a connection of its own (a subscribed connection takes no other command): a
// duplicate of the single-node client, or on Redis Cluster the cluster client's own pub/sub
// connection (PUBLISH on a cluster reaches the subscribers of every node).
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { isCluster, type Redis, type SingleRedis } from "../scripts.ts";

export class CancelWatch {
  readonly #runs = new Map<string, Set<() => void>>();
  #sub?: SingleRedis;
  #subscribed = false;
  #closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly channel: string,
    private readonly log: Logger,
  ) {}

  /**
   * Subscribes, trying again every few seconds while Redis cannot be reached (meanwhile a running
   * task is canceled at its next heartbeat). Resolves once subscribed or closed; never throws.
   */
  async start(): Promise<void> {
    const listener = (id: string) => this.notify(id);
    for (let tries = 1; !this.#closed; tries++) {
      try {
        if (isCluster(this.redis)) {
          await this.redis.subscribe(this.channel, listener);
        } else {
          this.#sub ??= this.#duplicate();
          if (!this.#sub.isOpen) await this.#sub.connect();
          await this.#sub.subscribe(this.channel, listener);
        }
        this.#subscribed = true;
        return;
      } catch (e) {
        if (tries === 1) this.log.warn("cancel notices not subscribed yet: a running task is canceled at its next heartbeat meanwhile", { error: toError(e) });
        await Bun.sleep(2_000);
      }
    }
  }

  #duplicate(): SingleRedis {
    const sub = (this.redis as SingleRedis).duplicate() as SingleRedis;
    // The client reconnects and subscribes again by itself; reconnection errors repeat, so debug only.
    sub.on("error", (e: Error) => this.log.debug("cancel subscriber connection error", { error: e.message }));
    return sub;
  }

  /** Calls `onCancel` when the task's cancellation is announced, until the returned function is called. */
  watch(taskId: string, onCancel: () => void): () => void {
    const set = this.#runs.get(taskId) ?? new Set<() => void>();
    this.#runs.set(taskId, set);
    set.add(onCancel);
    return () => {
      set.delete(onCancel);
      if (set.size === 0 && this.#runs.get(taskId) === set) this.#runs.delete(taskId);
    };
  }

  notify(taskId: string): void {
    const set = this.#runs.get(taskId);
    if (!set) return;
    this.log.info("cancellation announced: aborting the run", { task_id: taskId });
    for (const f of [...set]) f();
  }

  async close(): Promise<void> {
    this.#closed = true;
    try {
      if (this.#sub) {
        this.#sub.destroy();
      } else if (this.#subscribed && isCluster(this.redis)) {
        await this.redis.unsubscribe(this.channel);
      }
    } catch {
      /* closing anyway */
    }
  }
}
