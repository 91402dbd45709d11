// A circuit breaker for the consumer loop. While Redis (or the result topic) fails, receiving more
// messages only burns their RocketMQ deliveries: each receive counts one, and after
// MQ_RETRY_MAX_TIMES + 1 the broker dead-letters the message. So after a few failures in a row the
// breaker *opens*: the loop stops receiving (the backlog waits in the broker, untouched), and the
// breaker probes Redis with exponential backoff and full jitter. When Redis answers it goes
// *half-open*: one message is let through, and the loop closes it (success()) as soon as Redis answers
// that message's claim, or, for a message that never claims, once it is handled without a dependency
// failure (lib/worker/loop.ts #track). Each change of state is logged once, not each failure.
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../time.ts";

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  /** consecutive failures that open it */
  threshold?: number;
  /** first probe delay; doubles per failed probe up to maxMs */
  baseMs?: number;
  maxMs?: number;
  /** true when the dependency answers (e.g. a Redis PING with a timeout) */
  probe: () => Promise<boolean>;
}

export class Breaker {
  state: BreakerState = "closed";
  #failures = 0;
  #delay: number;
  #openedAt = 0;
  #waiters: (() => void)[] = [];
  #probing?: Promise<void>;
  readonly #stop = new AbortController();
  readonly #threshold: number;
  readonly #base: number;
  readonly #max: number;

  constructor(private readonly log: Logger, private readonly opts: BreakerOptions) {
    this.#threshold = opts.threshold ?? 3;
    this.#base = opts.baseMs ?? 1_000;
    this.#max = opts.maxMs ?? 30_000;
    this.#delay = this.#base;
  }

  /** How long a message received but not handled because of the failure should stay hidden. */
  get hideMs(): number {
    return Math.max(this.#delay, this.#base) * 2;
  }

  success(): void {
    this.#failures = 0;
    if (this.state === "closed") return;
    this.log.info("dependencies answer again: receiving resumed", { down_ms: Date.now() - this.#openedAt });
    this.state = "closed";
    this.#delay = this.#base;
    this.#wake();
  }

  failure(e: unknown): void {
    this.#failures++;
    if (this.state === "half-open") {
      this.#delay = Math.min(this.#max, this.#delay * 2);
      this.#open(e, false);
    } else if (this.state === "closed" && this.#failures >= this.#threshold) {
      this.#openedAt = Date.now();
      this.#open(e, true);
    }
  }

  #open(e: unknown, first: boolean) {
    this.state = "open";
    if (first) this.log.warn("Redis or the result topic is failing: receiving paused, probing with backoff", { error: toError(e) });
    else this.log.debug("probe message failed; still paused", { error: toError(e), retry_in_ms: this.#delay });
    this.#probing ??= this.#probeLoop().finally(() => (this.#probing = undefined));
  }

  async #probeLoop(): Promise<void> {
    while (this.state === "open" && !this.#stop.signal.aborted) {
      // Full jitter: workers that saw the same outage do not probe in step.
      const wait = Math.floor(this.#delay / 2 + (Math.random() * this.#delay) / 2);
      await sleep(wait, this.#stop.signal).catch(() => {});
      if (this.#stop.signal.aborted) return;
      // A message in hand may have been handled cleanly meanwhile and closed the breaker (success()):
      // then this loop is stale, and setting half-open would throttle a healthy loop to one message.
      if (this.state !== "open") return;
      let ok = false;
      try {
        ok = await this.opts.probe();
      } catch {
        ok = false;
      }
      // The same during the probe itself (up to REDIS_TIMEOUT_MS).
      if (this.state !== "open") return;
      if (ok) {
        this.log.debug("probe answered: letting one message through");
        this.state = "half-open";
        this.#wake();
        return;
      }
      this.#delay = Math.min(this.#max, this.#delay * 2);
    }
  }

  #wake() {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves when the state changes (or the breaker is stopped). */
  changed(): Promise<void> {
    if (this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }

  stop(): void {
    this.#stop.abort();
    this.#wake();
  }
}
