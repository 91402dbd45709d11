// The consumer loop: a small state machine (created -> running -> stopping -> stopped). It receives
// only when it has room (WORKER_CONCURRENCY runs at once), catches every error inside a turn and
// backs off, and stops by flag + abort: no new receives, running tasks get SHUTDOWN_TIMEOUT_MS to
// finish, the rest are handed back to the broker.
// One receive returns at most 32 messages, so with room for more it runs several receive calls at
// once (up to MAX_RECEIVES), each asking for a share of the room that no other call has claimed:
// never more messages in hand than WORKER_CONCURRENCY.
// A circuit breaker (breaker.ts) pauses receiving while Redis or the result topic fails, so a
// backlog waits in the broker instead of burning its deliveries.
import { toError } from "../errors.ts";
import { sleep, withTimeout } from "../time.ts";
import type { MessageView } from "../mq.ts";
import { Breaker, type BreakerOptions } from "./breaker.ts";
import { Isolation } from "./isolation.ts";
import { handleMessage, MIN_HIDE_MS, type Outcome, type Settler, type WorkerContext } from "./handle.ts";

export interface ReceivingConsumer {
  startup(): Promise<void>;
  receive(max: number, invisibleMs: number): Promise<MessageView[]>;
  ack(m: MessageView): Promise<void>;
  changeInvisibleDuration(m: MessageView, ms: number): Promise<void>;
}

/**
 * The longest a worker's shutdown takes before it forces its exit: SHUTDOWN_TIMEOUT_MS for running
 * tasks, then up to 15 s to hand the rest back, 15 s for the last receive, and the clients' closes.
 * A supervisor's stop timeout (compose stop_grace_period) must be longer.
 */
export const workerShutdownBudgetMs = (cfg: { SHUTDOWN_TIMEOUT_MS: number }) => cfg.SHUTDOWN_TIMEOUT_MS + 40_000;

type State = "created" | "running" | "stopping" | "stopped";
export type Handler = (m: MessageView, ctx: WorkerContext, shutdown: AbortSignal) => Promise<Outcome>;
const MAX_BATCH = 32;
/** Receive calls in flight at most: with hundreds of slots and a slow round trip, one call at a time takes in too few. */
const MAX_RECEIVES = 4;

export class ConsumerLoop {
  state: State = "created";
  readonly #inflight = new Set<Promise<void>>();
  readonly #wake = new AbortController(); // aborted by stop(): ends waits and sleeps
  readonly #shutdown = new AbortController(); // aborted when running tasks must hand back
  // One settle operation at a time per message: a heartbeat's receipt-handle change must not race an ack.
  readonly #settling = new WeakMap<MessageView, Promise<void>>();
  /** receive lanes waiting for a slot to free up */
  #slotWaiters: (() => void)[] = [];
  /** messages asked for by receive calls still in flight: room they have claimed */
  #requested = 0;
  #loop?: Promise<void>;
  #stopping?: Promise<void>;
  /**
   * The message let through while the breaker is half-open, until Redis answered its claim or it was
   * handled: a token per probe, so that a probe's late end cannot clear a later probe's.
   */
  #probe?: object;
  readonly settler: Settler;
  readonly breaker: Breaker;
  /** suspects (tasks whose earlier run died with its worker) run alone in this process */
  readonly isolation = new Isolation();

  constructor(
    private readonly consumer: ReceivingConsumer,
    private readonly ctx: Omit<WorkerContext, "settler">,
    /** what to do with each message: run the task (default), or settle a dead letter */
    private readonly handler: Handler = handleMessage,
    breaker: Partial<BreakerOptions> = {},
  ) {
    const serial = (m: MessageView, op: () => Promise<void>) => {
      const next = (this.#settling.get(m) ?? Promise.resolve()).catch(() => {}).then(op);
      this.#settling.set(m, next);
      return next;
    };
    this.settler = {
      ack: (m) => serial(m, () => this.consumer.ack(m)),
      hide: (m, ms, onlyIf) =>
        serial(m, async () => {
          if (!onlyIf || onlyIf()) await this.consumer.changeInvisibleDuration(m, ms);
        }),
    };
    const { cfg, store } = ctx;
    this.breaker = new Breaker(ctx.log, {
      probe: () => withTimeout(store.ping(), cfg.REDIS_TIMEOUT_MS, "redis ping"),
      ...breaker,
    });
  }

  /** Starts the consumer (retrying while RocketMQ is unreachable) and the loop; returns once running. */
  async start(): Promise<void> {
    if (this.state !== "created") return;
    this.state = "running";
    let delay = 500;
    while (this.state === "running") {
      try {
        await this.consumer.startup();
        break;
      } catch (e) {
        this.ctx.log.warn("rocketmq consumer could not start; retrying", { error: toError(e), retry_in_ms: delay });
        await sleep(delay, this.#wake.signal).catch(() => {});
        delay = Math.min(delay * 2, 10_000);
      }
    }
    this.#loop = this.#run();
  }

  #run(): Promise<void> {
    const lanes = Math.max(1, Math.min(MAX_RECEIVES, Math.ceil(this.ctx.cfg.WORKER_CONCURRENCY / MAX_BATCH)));
    return Promise.all(Array.from({ length: lanes }, () => this.#lane())).then(() => {});
  }

  /** Free room no receive call has claimed yet. */
  get #room(): number {
    return this.ctx.cfg.WORKER_CONCURRENCY - this.#inflight.size - this.#requested;
  }

  #waitForSlot(): Promise<void> {
    return new Promise<void>((r) => this.#slotWaiters.push(r));
  }

  #wakeLanes() {
    const waiters = this.#slotWaiters;
    this.#slotWaiters = [];
    for (const w of waiters) w();
  }

  /** One receive lane: receive when there is room, hand each message to a task, repeat. */
  async #lane(): Promise<void> {
    const { cfg, log } = this.ctx;
    let backoff = 0;
    while (this.state === "running") {
      const room = this.#room;
      if (room <= 0) {
        await this.#waitForSlot();
        continue;
      }
      const state = this.breaker.state;
      // Open: receive nothing (no delivery is spent). Half-open: one message at a time, as the probe.
      if (state === "open" || (state === "half-open" && (this.#probe || this.#requested > 0))) {
        await Promise.race([this.breaker.changed(), this.#waitForSlot()]);
        continue;
      }
      const probing = state === "half-open";
      const want = probing ? 1 : Math.min(room, MAX_BATCH);
      let messages: MessageView[];
      this.#requested += want;
      try {
        messages = await this.consumer.receive(want, cfg.MQ_INVISIBLE_MS);
        backoff = 0;
      } catch (e) {
        backoff = Math.min(Math.max(backoff * 2, 250), 5_000);
        log.warn("receive failed; backing off", { error: toError(e), retry_in_ms: backoff });
        await sleep(backoff, this.#wake.signal).catch(() => {});
        continue;
      } finally {
        this.#requested -= want;
      }
      if (probing && messages.length === 0) this.breaker.success(); // Redis answers and nothing waits
      for (const m of messages) {
        if (this.state !== "running") {
          // Received while stopping: give it straight back.
          await this.settler.hide(m, MIN_HIDE_MS).catch(() => {});
          continue;
        }
        this.#track(m, probing);
      }
      // Claimed room this call did not fill is free again for a lane waiting on it.
      if (messages.length < want) this.#wakeLanes();
    }
  }

  #track(m: MessageView, probe: boolean) {
    const token = probe ? {} : undefined;
    if (token) this.#probe = token;
    const probeDone = () => {
      if (token && this.#probe === token) this.#probe = undefined;
    };
    // A probe closes the breaker as soon as Redis answers its claim (handle.ts): waiting for the run
    // to end held the worker at one task at a time for the whole agent run (minutes with an LLM). Its
    // slot as the probe ends then too, or a later half-open (Redis failing again) would wait for this
    // run. A probe that never claims (poison, a dead letter, a parked or waiting message) still closes
    // the breaker when it ends cleanly, below; success() on a closed breaker logs nothing.
    const redisAnswered = token
      ? () => {
          probeDone();
          this.breaker.success();
        }
      : undefined;
    const ctx: WorkerContext = { ...this.ctx, settler: this.settler, isolation: this.isolation, redisAnswered };
    const p = this.handler(m, ctx, this.#shutdown.signal)
      // "lost" proves nothing about Redis (a fenced run ends that way while Redis is down).
      .then((outcome) => {
        if (outcome !== "lost") this.breaker.success();
      })
      .catch(async (e) => {
        // Redis or RocketMQ failed underneath. Logged once per outage (the breaker logs its opening);
        // the message stays hidden past the next probe instead of coming back in a spin. A probe whose
        // claim was answered has closed the breaker already: its later failure counts as any closed-state
        // failure does (one of the threshold), since Redis did answer meanwhile.
        const wasClosed = this.breaker.state === "closed";
        this.breaker.failure(e);
        const fields = { message_id: m.messageId, error: toError(e) };
        if (wasClosed && this.breaker.state === "closed") this.ctx.log.warn("message handling failed; it will be redelivered", fields);
        else this.ctx.log.debug("message handling failed; it will be redelivered", fields);
        await this.settler.hide(m, this.breaker.hideMs, () => this.breaker.state !== "closed").catch(() => {});
      })
      .finally(() => {
        probeDone();
        this.#inflight.delete(p);
        this.#wakeLanes();
      });
    this.#inflight.add(p);
  }

  /** Stops receiving, lets running tasks finish for `graceMs`, hands back the rest. Safe to call twice. */
  stop(graceMs: number): Promise<void> {
    this.#stopping ??= (async () => {
      const { log } = this.ctx;
      this.state = "stopping";
      this.#wake.abort();
      this.breaker.stop();
      this.#wakeLanes();
      log.info("worker stopping", { inflight: this.#inflight.size, grace_ms: graceMs });
      const all = () => Promise.allSettled([...this.#inflight]);
      const finished = await Promise.race([all().then(() => true), sleep(graceMs).then(() => false)]);
      if (!finished) {
        log.info("grace period over: handing back unfinished tasks", { inflight: this.#inflight.size });
        this.#shutdown.abort();
        await Promise.race([all(), sleep(15_000)]);
      }
      // A receive may still be long-polling; its messages are handed back when it returns.
      await Promise.race([this.#loop, sleep(15_000)]);
      this.state = "stopped";
    })();
    return this.#stopping;
  }
}
