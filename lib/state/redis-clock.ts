// Redis's clock as this process sees it, so that a write can carry a deadline in Redis time that
// the script itself checks (create.lua's "answer by"): a create that reaches Redis after the API
// stopped waiting for it (REDIS_TIMEOUT_MS: Redis hung, a fork stall, the network) refuses itself
// instead of landing as a task whose client was told 503.
//
// The offset is sampled with TIME, read at the middle of the round trip (good to half of it), and
// again every REFRESH_MS. It is kept against this process's monotonic clock (performance.now()),
// so a step of the host's wall clock (NTP) moves no deadline. A sample whose round trip took more
// than a quarter of the command timeout says little and is dropped. No sample yet (just started,
// Redis away since): no deadline, as before. On Redis Cluster the sample comes from one node (the
// one owning `routeKey`); the nodes' clocks are taken to agree to well within the margin (NTP keeps
// them within milliseconds).
import { send, type Redis } from "../scripts.ts";

const REFRESH_MS = 30_000;
const RETRY_MS = 1_000;

export class RedisClock {
  #offsetMs?: number;
  #sampledAt = -Infinity;
  #sampling?: Promise<void>;

  constructor(
    private readonly redis: Redis,
    /** REDIS_TIMEOUT_MS: how long a caller waits for a command */
    private readonly timeoutMs: number,
    /** a key under the prefix, for routing TIME on a cluster (TIME has no key) */
    private readonly routeKey: string,
  ) {}

  /**
   * The Redis time (ms) after which a command sent now is no longer waited for, less a margin for
   * its answer to come back (a quarter of the timeout, at most 250 ms); undefined while the offset
   * is unknown. Starts a new sample when the last one is old, without waiting for it.
   */
  answerBy(): number | undefined {
    const now = performance.now();
    if (now - this.#sampledAt > REFRESH_MS) void this.sample();
    if (this.#offsetMs === undefined) return undefined;
    return Math.floor(now + this.#offsetMs + this.timeoutMs - Math.min(250, this.timeoutMs / 4));
  }

  /** One TIME round trip (one at a time). A failed or slow one keeps the previous offset; another follows in a second. */
  sample(): Promise<void> {
    this.#sampling ??= (async () => {
      try {
        const t0 = performance.now();
        const [s, us] = await send<[string, string]>(this.redis, this.routeKey, ["TIME"]);
        const t1 = performance.now();
        if (t1 - t0 > this.timeoutMs / 4) return this.#retrySoon();
        this.#offsetMs = Number(s) * 1000 + Number(us) / 1000 - (t0 + t1) / 2;
        this.#sampledAt = t1;
      } catch {
        this.#retrySoon(); // Redis away
      } finally {
        this.#sampling = undefined;
      }
    })();
    return this.#sampling;
  }

  #retrySoon() {
    this.#sampledAt = performance.now() - REFRESH_MS + RETRY_MS;
  }
}
