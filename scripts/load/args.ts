// Command-line options of scripts/load.ts, validated once; a bad value exits 2 naming the option.
import { ArgsError, strictArgs } from "./cli.ts";

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
  /** /metrics URLs (the API's, each worker's) whose counts are compared with the run's (http mode) */
  metrics: string[];
  /** seconds the --metrics counts may take to agree after the last result */
  metricsWaitS: number;
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
  --metrics URL[,URL...] the API's and EVERY worker's /metrics URL (repeatable or comma list; http mode
                         only): scraped before the first POST and after the last result; the deltas of
                         agent_tasks_{submitted,accepted,rejected}_total and finished_total{status=done|failed},
                         summed over the URLs, must equal load.ts's counts (exit 1 if not). Sends
                         Authorization: Bearer $METRICS_TOKEN when set. The system must carry no other
                         traffic. (mq mode sends to a temporary topic no worker reads: nothing to compare.)
  --metrics-wait S       seconds the counts may take to agree after the last result, re-read until
                         then (default 10: a worker counts a task just after publishing its result)
  --json                 print one JSON summary on stdout and nothing else there
Environment: the same variables as api.ts/worker.ts (lib/config.ts): MQ_TOPIC_RESULT, MQ_NAMESRV, ...
Exit: 0 all results in (and the metrics agree), 1 a task lost, GET /tasks/:id disagrees or the metrics
differ, 2 a bad option (an unreachable --metrics URL included: checked before anything is sent).`;

export { ArgsError };

function int(name: string, v: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ArgsError(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return n;
}

export function parseLoadArgs(argv: string[], defaults: { apiPort: number; queues: number }): LoadOptions {
  const values = strictArgs(argv, {
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
    metrics: { type: "string", multiple: true },
    "metrics-wait": { type: "string" },
    json: { type: "boolean" },
  });
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
  const metrics = metricsUrls(values.metrics ?? []);
  if (metrics.length && mode === "mq")
    throw new ArgsError("--metrics applies to http mode only: mq mode sends to a temporary topic that no worker reads, so no task count of the fleet moves");
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
    metrics,
    metricsWaitS: int("metrics-wait", values["metrics-wait"], 10, 0, 3600),
  };
}

/** `--metrics a,b --metrics c`: http(s) URLs, each once (a URL given twice would count its process twice). */
function metricsUrls(values: string[]): string[] {
  const urls = values.flatMap((v) => v.split(",")).map((u) => u.trim());
  for (const u of urls) {
    let url: URL | undefined;
    try {
      url = new URL(u);
    } catch {
      /* below */
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:"))
      throw new ArgsError(`--metrics must be http(s) URLs of /metrics, comma-separated, got ${JSON.stringify(u)}`);
  }
  const dup = urls.find((u, i) => urls.indexOf(u) !== i);
  if (dup) throw new ArgsError(`--metrics lists ${JSON.stringify(dup)} twice: its counts would be summed twice`);
  return urls;
}
