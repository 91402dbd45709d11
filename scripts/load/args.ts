// Command-line options of scripts/load.ts, validated once; a bad value exits 2 naming the option.
import { parseArgs } from "node:util";

export interface LoadOptions {
  mode: "http" | "mq";
  tasks: number;
  /** requests (http) or sends (mq) in flight; ignored when `rate` is set */
  concurrency: number;
  /** tasks per second, open loop; undefined = closed loop at `concurrency` */
  rate?: number;
  api: string;
  /** seconds to wait for results after the last submit */
  timeoutS: number;
  contentBytes: number;
  json: boolean;
  /** parallel receive calls on the result (http) or temporary (mq) topic */
  receivers: number;
  /** GET /tasks/:id checks of finished tasks (http mode) */
  verify: number;
  /** queues of the temporary topic (mq mode) */
  queues: number;
  /** processes whose RSS is sampled during the run */
  watchPids: number[];
}

export const USAGE = `usage: bun scripts/load.ts [options]
  --mode http|mq         http: POST /tasks and follow results (default); mq: RocketMQ alone, the ceiling
  --tasks N              tasks to send (default 1000)
  --concurrency C        requests in flight, closed loop (default 32)
  --rate R               tasks per second, open loop (overrides --concurrency)
  --api URL              API base URL (default http://127.0.0.1:\${API_PORT})
  --timeout S            seconds to wait for results after the last submit (default 60)
  --content-bytes B      size of each task's content (default 256)
  --receivers K          parallel receive calls on the result topic (default 4)
  --verify N             finished tasks checked with GET /tasks/:id (http, default 20)
  --queues Q             queues of the temporary topic (mq, default MQ_QUEUES)
  --watch-pid PID        sample this process's RSS during the run (repeatable), e.g. the worker's
  --json                 print one JSON summary on stdout and nothing else there
Environment: the same variables as api.ts/worker.ts (lib/config.ts): MQ_TOPIC_RESULT, MQ_NAMESRV, ...`;

export class ArgsError extends Error {
  override name = "ArgsError";
}

function int(name: string, v: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ArgsError(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return n;
}

export function parseLoadArgs(argv: string[], defaults: { apiPort: number; queues: number }): LoadOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        mode: { type: "string" },
        tasks: { type: "string" },
        concurrency: { type: "string" },
        rate: { type: "string" },
        api: { type: "string" },
        timeout: { type: "string" },
        "content-bytes": { type: "string" },
        receivers: { type: "string" },
        verify: { type: "string" },
        queues: { type: "string" },
        "watch-pid": { type: "string", multiple: true },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new ArgsError((e as Error).message);
  }
  if (values.help) throw new ArgsError("");
  const mode = values.mode ?? "http";
  if (mode !== "http" && mode !== "mq") throw new ArgsError(`--mode must be http or mq, got ${JSON.stringify(mode)}`);
  let rate: number | undefined;
  if (values.rate !== undefined) {
    rate = Number(values.rate);
    if (!Number.isFinite(rate) || rate <= 0) throw new ArgsError(`--rate must be a positive number, got ${JSON.stringify(values.rate)}`);
  }
  const timeout = values.timeout === undefined ? 60 : Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) throw new ArgsError(`--timeout must be a number of seconds >= 0, got ${JSON.stringify(values.timeout)}`);
  const api = (values.api ?? `http://127.0.0.1:${defaults.apiPort}`).replace(/\/+$/, "");
  try {
    new URL(api);
  } catch {
    throw new ArgsError(`--api must be a URL, got ${JSON.stringify(values.api)}`);
  }
  return {
    mode,
    tasks: int("tasks", values.tasks, 1000, 1),
    concurrency: int("concurrency", values.concurrency, 32, 1, 100_000),
    rate,
    api,
    timeoutS: timeout,
    contentBytes: int("content-bytes", values["content-bytes"], 256, 1, 4_194_304),
    json: values.json ?? false,
    receivers: int("receivers", values.receivers, 4, 1, 64),
    verify: int("verify", values.verify, 20, 0, 10_000),
    queues: int("queues", values.queues, defaults.queues, 1, 1024),
    watchPids: (values["watch-pid"] ?? []).map((v) => int("watch-pid", v, 0, 1)),
  };
}
