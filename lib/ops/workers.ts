// Workers announce themselves in Redis, for the dashboard and `scripts/tasks.ts stats`: every
// ANNOUNCE_EVERY_MS a worker writes its announcement (id, host, pid, started, in-flight, capacity) as
// a key with a TTL of a few periods, and its id into an index zset. A worker that dies stops
// renewing its key, which expires: readers take a worker for live exactly while its key exists, and
// drop index entries whose key is gone. No clock is compared across hosts.
import { hostname } from "node:os";
import type { Keys } from "../keys.ts";
import { send, type Redis } from "../scripts.ts";

export const ANNOUNCE_EVERY_MS = 3_000;
/** An announcement outlives three missed periods (a GC pause, a slow Redis), not more. */
export const ANNOUNCE_TTL_MS = 10_000;

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  /** ISO 8601 */
  started: string;
  in_flight: number;
  capacity: number;
  /** ISO 8601, this announcement */
  heartbeat: string;
  /** tasks this process finished (done or failed) since it started */
  finished: number;
}

export class WorkerAnnouncer {
  readonly id = `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
  readonly #started = new Date().toISOString();
  #timer?: ReturnType<typeof setInterval>;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly state: () => { in_flight: number; capacity: number; finished: number },
  ) {}

  info(): WorkerInfo {
    return { id: this.id, host: hostname(), pid: process.pid, started: this.#started, ...this.state(), heartbeat: new Date().toISOString() };
  }

  /** One announcement (errors are the caller's: a Redis outage only makes this worker look gone). */
  async announce(): Promise<void> {
    const k = this.keys.worker(this.id);
    await send(this.redis, k, ["SET", k, JSON.stringify(this.info()), "PX", String(ANNOUNCE_TTL_MS)]);
    await send(this.redis, this.keys.workers, ["ZADD", this.keys.workers, String(Date.now()), this.id]);
  }

  start(): this {
    const beat = () => void this.announce().catch(() => {});
    beat();
    this.#timer = setInterval(beat, ANNOUNCE_EVERY_MS);
    this.#timer.unref?.();
    return this;
  }

  /** Stops announcing and withdraws the announcement (a clean stop leaves no ghost for 10 s). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const k = this.keys.worker(this.id);
    await Promise.all([
      send(this.redis, k, ["DEL", k]).catch(() => {}),
      send(this.redis, this.keys.workers, ["ZREM", this.keys.workers, this.id]).catch(() => {}),
    ]);
  }
}

/** Live workers (their announcement key exists), by id; index entries of gone ones are dropped. */
export async function liveWorkers(redis: Redis, keys: Keys): Promise<WorkerInfo[]> {
  const ids = (await send<string[]>(redis, keys.workers, ["ZRANGE", keys.workers, "0", "-1"])) ?? [];
  const got = await Promise.all(ids.map((id) => send<string | null>(redis, keys.worker(id), ["GET", keys.worker(id)])));
  const live: WorkerInfo[] = [];
  const gone: string[] = [];
  got.forEach((v, i) => {
    if (v) live.push(JSON.parse(v) as WorkerInfo);
    else gone.push(ids[i]!);
  });
  if (gone.length) await send(redis, keys.workers, ["ZREM", keys.workers, ...gone]).catch(() => {});
  return live.sort((a, b) => a.id.localeCompare(b.id));
}
