// One schema for the whole environment: read and validated once, at start-up.
// The original Python service's variable names (REDIS_HOST, MQ_ENDPOINT, ...) work unchanged.
import { isIPv6 } from "node:net";
import { KindGuard, Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

const Int = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description });
const Str = (def: string, description: string) => Type.String({ default: def, minLength: 1, description });
const Opt = (description: string) => Type.Optional(Type.String({ description }));
/** The dashboard's token guards retries of any task and is checked without a rate limit: no short guessable ones. */
export const ADMIN_TOKEN_MIN = 32;

export const ConfigSchema = Type.Object({
  REDIS_HOST: Str("127.0.0.1", "Redis host (ignored when REDIS_URL is set)"),
  REDIS_PORT: Int(6379, 1, 65535, "Redis port (ignored when REDIS_URL is set)"),
  REDIS_URL: Opt("redis:// or rediss:// URL, may carry user and password"),
  REDIS_PASSWORD: Opt("Redis password (secret)"),
  REDIS_USERNAME: Opt("Redis ACL user (REDIS_URL may carry it instead)"),
  REDIS_TLS: Type.Boolean({ default: false, description: "TLS to Redis (also implied by a rediss:// REDIS_URL)" }),
  REDIS_TLS_CA_FILE: Opt("PEM file of the CA that signed the Redis server's certificate (rediss:// with a private CA)"),
  REDIS_CLUSTER_NODES: Opt("Redis Cluster seed nodes, host:port[,host:port] (IPv6: [addr]:port); set: the cluster client is used"),
  REDIS_PREFIX: Type.String({ default: "", description: "prefix of every Redis key this system writes (no { or })" }),
  REDIS_TIMEOUT_MS: Int(2_000, 100, 60_000, "timeout of one Redis command; a hung Redis turns into errors (503) after this"),
  REDIS_BUCKETS: Int(16, 1, 1024, "buckets the global hint sets (outbox, stalled) are split into; one hash tag each"),
  TASK_TTL_SECONDS: Int(86_400, 60, 31_536_000, "how long a task's status is kept after its last change"),
  IDEMPOTENCY_TTL_SECONDS: Int(86_400, 60, 31_536_000,
    "how long an Idempotency-Key of POST /tasks is kept (a key whose task has expired meanwhile starts a new task)"),
  DEAD_LETTER_TTL_SECONDS: Int(604_800, 60, 31_536_000, "how long the dead-letters list is kept after its last entry"),

  MQ_ENDPOINT: Str("127.0.0.1:8081", "RocketMQ gRPC proxy endpoint(s), host:port[;host:port]"),
  MQ_NAMESRV: Str("127.0.0.1:9876", "RocketMQ name server, for provisioning"),
  MQ_CLUSTER: Str("DefaultCluster", "RocketMQ cluster name, for provisioning"),
  MQ_TOPIC_REQUEST: Str("TopicTest", "topic the API publishes tasks to"),
  MQ_TOPIC_RESULT: Str("TopicResult", "topic workers publish results to"),
  MQ_GROUP_AGENT: Str("GID_AGENT_PYTHON", "consumer group of the workers: the original's, so a mixed fleet is one group"),
  MQ_ACCESS_KEY: Opt("RocketMQ ACL access key"),
  MQ_SECRET_KEY: Opt("RocketMQ ACL secret key (secret)"),
  MQ_TLS: Type.Boolean({ default: false, description: "TLS to the gRPC proxy (trusting a private CA: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)" }),
  MQ_QUEUES: Int(16, 1, 1024, "queues per topic created by provisioning"),
  MQ_RETRY_MAX_TIMES: Int(16, 0, 64, "RocketMQ redeliveries before %DLQ% (a backstop behind MAX_ATTEMPTS)"),
  MQ_INVISIBLE_MS: Int(60_000, 10_000, 43_200_000, "how long a received message stays hidden; renewed while a task runs"),
  MQ_REQUEST_TIMEOUT_MS: Int(3_000, 1_000, 60_000, "timeout of one RocketMQ request"),
  MQ_SEND_BATCH_MAX: Int(32, 1, 1_000,
    "most messages of one topic sent in one request, gathered over one event-loop turn (1: one request per message)"),

  API_PORT: Int(8000, 0, 65535, "HTTP port of the API"),
  API_TOMBSTONE_JOURNAL: Opt("file where the API keeps the ids of tasks told 503 whose tombstone Redis has not taken yet, " +
    "written at its next start (default: <temp dir>/agent-prod/tombstones-[<REDIS_PREFIX>-]<API_PORT>.log; on a volume that outlives the container)"),
  API_HOST: Str("127.0.0.1", "HTTP bind address of the API (0.0.0.0: every interface; then API keys are required, see AUTH_MODE)"),
  ADMIN_TOKEN: Opt(`token of the operators' dashboard, GET /dashboard (secret; unset: the dashboard is off, 404); ${ADMIN_TOKEN_MIN}+ random characters`),
  AUTH_MODE: Type.Union([Type.Literal("auto"), Type.Literal("keys"), Type.Literal("none")], {
    default: "auto",
    description: "keys: Bearer API key on /tasks; none: no authentication; auto: none on a loopback API_HOST, keys otherwise",
  }),
  MAX_CONTENT_BYTES: Int(32_768, 1, 4_194_304, "largest task content, UTF-8 bytes"),
  RETRY_AFTER_SECONDS: Int(5, 1, 3600, "Retry-After sent with a 503"),
  MAX_DELAY_SECONDS: Int(86_400, 1, 31_536_000,
    "longest delay of a delayed task (delay_ms, run_at; 422 past it): RocketMQ's timer limit, the smaller of the proxy's maxDelayTimeMills (1 day by default) and the broker's timerMaxDelaySec (3 days)"),
  USER_TASKS_MAX: Int(10_000, 1, 1_000_000, "tasks kept in one user's listing index (GET /tasks); the oldest are trimmed past it"),

  WORKER_CONCURRENCY: Int(64, 1, 10_000, "tasks run at once by one worker process"),
  MAX_ATTEMPTS: Int(3, 1, 100, "runs of a task before it is marked failed"),
  RETRY_BASE_MS: Int(10_000, 1_000, 3_600_000, "first retry delay; doubles per attempt"),
  TASK_TIMEOUT_MS: Int(600_000, 100, 43_200_000, "a run of the agent is aborted after this long"),
  TASK_ABORT_GRACE_MS: Int(5_000, 0, 600_000,
    "after TASK_TIMEOUT_MS, how long an agent may take to honour its AbortSignal before its slot is freed anyway"),
  WORKER_GC_INTERVAL_MS: Int(2_000, 0, 600_000, "full garbage collection this often in a worker (0: leave it to the runtime)"),
  WORKER_GC_MIN_RSS_MIB: Int(130, 0, 1_000_000,
    "the collection of WORKER_GC_INTERVAL_MS runs (at most that often) only when the worker's RSS is at least this (MiB)"),
  STALLED_AFTER_MS: Int(600_000, 1_000, 86_400_000,
    "a running task whose lease ended, or a retrying one whose delay ended, this long ago without a new claim is re-published"),
  OUTBOX_SWEEP_AGE_MS: Int(660_000, 1_000, 86_400_000,
    "a task written but never confirmed sent (its API died mid-POST: no 202) is sent by an outbox sweep once this old; " +
    "keep it above the 10 min an API retries the tombstone of a task it told 503, or such a task may run"),
  DEAD_LETTER_BODY_CHARS: Int(4_096, 0, 1_048_576,
    "characters of a message body kept in a dead-letters entry (user content: keep it short; 0 keeps none)"),
  SHUTDOWN_TIMEOUT_MS: Int(25_000, 0, 3_600_000, "how long shutdown waits for running tasks before handing them back"),

  AGENT_DELAY_MS: Int(3_000, 0, 3_600_000, "delay of the demo agent"),
  AGENT: Type.Union([Type.Literal("auto"), Type.Literal("record")], {
    default: "auto",
    description: "auto: the LLM agent when LLM_BASE_URL is set, else the demo agent; record: the recording test agent (lib/agent/test-agents.ts)",
  }),
  AGENT_RECORD_DIR: Str("/tmp/agent-prod-record", "where AGENT=record appends its run events, one file per process"),
  LLM_BASE_URL: Opt("OpenAI-compatible base URL, e.g. https://api.openai.com/v1; set: the LLM agent runs instead of the demo agent"),
  LLM_API_KEY: Opt("API key of the LLM service (secret); may be left out for a server on this machine (127.0.0.1, localhost, ::1)"),
  LLM_MODEL: Str("gpt-4o-mini", "model name sent to the LLM service"),
  LLM_TIMEOUT_MS: Int(60_000, 100, 3_600_000, "timeout of one LLM call (a repair request is another call)"),
  LLM_REPAIR_TRIES: Int(2, 0, 10, "times an invalid LLM answer is sent back to the model with the error, before the attempt fails (retryable)"),
  LLM_MAX_CONCURRENCY: Int(4, 1, 1_000, "LLM calls in flight per worker process; tasks beyond it wait, their TASK_TIMEOUT_MS clock paused"),
  LLM_MAX_TOKENS: Int(400, 16, 100_000, "max_tokens of one LLM answer"),
  LLM_RPM: Int(0, 0, 10_000_000, "LLM requests per minute for LLM_MODEL across all workers (0: no budget)"),
  LLM_TPM: Int(0, 0, 1_000_000_000, "LLM tokens per minute for LLM_MODEL across all workers (0: no budget)"),

  // Observability (docs/observability.md): Prometheus metrics and OpenTelemetry traces.
  METRICS_ENABLED: Type.Boolean({ default: true, description: "record metrics and serve GET /metrics on the API (false: no recording, no route)" }),
  METRICS_TOKEN: Opt("set: GET /metrics (API and worker) needs Authorization: Bearer <this> (secret); unset: served without a key, like /healthz"),
  WORKER_METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: "a worker serves GET /metrics on this port (unset: no metrics in workers)" })),
  WORKER_METRICS_HOST: Str("127.0.0.1", "bind address of the worker's metrics port"),
  OTEL_EXPORTER_OTLP_ENDPOINT: Opt("OTLP/HTTP collector base URL (spans go to <it>/v1/traces as JSON); unset: no tracing, no SDK loaded"),
  OTEL_SERVICE_NAME: Opt("service.name of the spans (default agent-prod-api / agent-prod-worker)"),
  OTEL_TRACES_SAMPLER_ARG: Type.Number({ default: 1, minimum: 0, maximum: 1,
    description: "share of new traces recorded (parent-based: a POST's traceparent decides for its own trace); 1: all" }),
  OTEL_BSP_SCHEDULE_DELAY: Int(5_000, 1, 600_000, "ms between two exports of finished spans (OpenTelemetry's batch span processor)"),

  LOG_LEVEL: Type.Union([Type.Literal("debug"), Type.Literal("info"), Type.Literal("warn"), Type.Literal("error")], {
    default: "info",
  }),
  LOG_FORMAT: Type.Union([Type.Literal("json"), Type.Literal("pretty"), Type.Literal("auto")], { default: "auto" }),
});
export type Config = Static<typeof ConfigSchema>;

/** Names whose values must never be printed. */
export const SECRET_KEYS = ["REDIS_PASSWORD", "MQ_SECRET_KEY", "LLM_API_KEY", "REDIS_URL", "ADMIN_TOKEN", "METRICS_TOKEN"] as const;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** A value as a config message may show it. */
const shown = (name: string, value: unknown) => ((SECRET_KEYS as readonly string[]).includes(name) ? "(hidden)" : JSON.stringify(value));

/**
 * How an integer variable is written: decimal, an exponent allowed (1e6, 1.5e3: read by `Number()`,
 * as the CLIs' flags are), a sign allowed (the range check then names the minimum). Not the other
 * forms `Number()` takes: surrounding spaces, hex, binary, Infinity.
 */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * The integer a variable's text stands for, or undefined when it is not a whole number. Read before
 * Value.Convert, whose parseInt truncates at the first character it does not take: "1e6" was 1 (every
 * POST then 413), "2.5" was 2, " 7" was 7.
 */
export function integerValue(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isInteger(n) ? n + 0 : undefined; // + 0: "-0" is 0
}

/** Validates an environment; throws ConfigError listing every bad variable (never its secret value). */
export function parseConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty value is an unset one (VAR= in an env file, "" to clear an inherited value): its default.
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.properties)) {
    const v = env[key];
    if (v !== undefined && v !== "") raw[key] = v;
  }
  const given = { ...raw }; // what a message shows: the text as written
  const problems: string[] = [];
  // Every integer of the schema is read here, not by Value.Convert (integerValue). A bad one is
  // reported once: left out of what the schema checks, which then holds its default.
  for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
    const text = raw[name];
    if (!KindGuard.IsInteger(schema) || typeof text !== "string") continue;
    const n = integerValue(text);
    if (n !== undefined) raw[name] = n;
    else {
      problems.push(`${name}=${shown(name, text)}: not a whole number (decimal digits, an exponent allowed: 1e6)`);
      delete raw[name];
    }
  }
  const withDefaults = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, raw));
  for (const e of Value.Errors(ConfigSchema, withDefaults)) {
    const name = e.path.replace(/^\//, "");
    problems.push(`${name}=${shown(name, given[name])}: ${e.message}`);
  }
  const cfg = withDefaults as Config;
  if (cfg.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = parseClusterNodes(cfg.REDIS_CLUSTER_NODES);
    if (!Array.isArray(nodes)) problems.push(nodes.problem);
  }
  if (Boolean(cfg.MQ_ACCESS_KEY) !== Boolean(cfg.MQ_SECRET_KEY))
    problems.push("MQ_ACCESS_KEY and MQ_SECRET_KEY must be set together");
  if (cfg.LLM_API_KEY && !cfg.LLM_BASE_URL) problems.push("LLM_API_KEY is set but LLM_BASE_URL is not");
  if (cfg.REDIS_URL) {
    const why = redisUrlProblem(cfg.REDIS_URL);
    if (why) problems.push(`REDIS_URL=(hidden): ${why}`);
  }
  if (cfg.OTEL_EXPORTER_OTLP_ENDPOINT && urlHost(cfg.OTEL_EXPORTER_OTLP_ENDPOINT) === undefined)
    problems.push(`OTEL_EXPORTER_OTLP_ENDPOINT=${shownUrl(cfg.OTEL_EXPORTER_OTLP_ENDPOINT)}: not an http(s) URL; ${ENCODE_HINT}`);
  if (cfg.LLM_BASE_URL) {
    const host = urlHost(cfg.LLM_BASE_URL);
    if (host === undefined) problems.push(`LLM_BASE_URL=${shownUrl(cfg.LLM_BASE_URL)}: not an http(s) URL`);
    // A remote service without a key is almost surely a forgotten key; a local server needs none.
    else if (!cfg.LLM_API_KEY && !LOCAL_HOSTS.has(host))
      problems.push(`LLM_API_KEY is needed for LLM_BASE_URL on ${host} (only 127.0.0.1, localhost and ::1 go without)`);
  }
  if (cfg.ADMIN_TOKEN !== undefined && cfg.ADMIN_TOKEN.length < ADMIN_TOKEN_MIN)
    problems.push(`ADMIN_TOKEN=(hidden): must be at least ${ADMIN_TOKEN_MIN} characters (random: openssl rand -hex 32)`);
  if (/[{}]/.test(cfg.REDIS_PREFIX))
    problems.push(`REDIS_PREFIX=${JSON.stringify(cfg.REDIS_PREFIX)}: must not contain { or } (Redis Cluster hash tags)`);
  // The TTL is renewed by every transition and heartbeat; the longest wait without one is a retry's delay.
  const longestGap = Math.max(cfg.TASK_TIMEOUT_MS, cfg.MQ_INVISIBLE_MS) + Math.min(2 * 3600_000, cfg.RETRY_BASE_MS * 2 ** Math.max(0, cfg.MAX_ATTEMPTS - 2));
  if (problems.length === 0 && cfg.TASK_TTL_SECONDS * 1000 <= longestGap)
    problems.push(`TASK_TTL_SECONDS=${cfg.TASK_TTL_SECONDS} must exceed TASK_TIMEOUT_MS=${cfg.TASK_TIMEOUT_MS} plus the longest retry delay ` +
      `(RETRY_BASE_MS doubled up to MAX_ATTEMPTS): ${Math.ceil(longestGap / 1000)} s, or a task could expire while it runs or waits`);
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

export type ClusterNode = { host: string; port: number };

/**
 * The seed nodes of a REDIS_CLUSTER_NODES value, or the config problem naming it. Each node is
 * host:port (port 1..65535; an IPv6 address in brackets, [::1]:7000, returned without them, as a
 * socket's host wants it); no scheme, no empty entries, at least one node. Unchecked, "a:70o0" gave
 * port NaN, "redis://a:7000" host "redis://a", and " , " no nodes: silently single-node REDIS_HOST.
 */
export function parseClusterNodes(value: string): ClusterNode[] | { problem: string } {
  const nodes: ClusterNode[] = [];
  const bad: string[] = [];
  const entries = value.split(",").map((s) => s.trim());
  for (const entry of entries) {
    const why = clusterNodeProblem(entry, nodes);
    const line = why && `${JSON.stringify(entry)}: ${why}`;
    if (line && !bad.includes(line)) bad.push(line);
  }
  if (bad.length === 0 && nodes.length > 0) return nodes;
  // A URL with credentials in it (redis://user:pass@host:port) is not echoed.
  if (value.includes("@"))
    return { problem: "REDIS_CLUSTER_NODES=(hidden: may hold a password): must be host:port[,host:port] (IPv6: [addr]:port); " +
      "it holds an @: credentials go in REDIS_USERNAME and REDIS_PASSWORD" };
  return { problem: `REDIS_CLUSTER_NODES=${JSON.stringify(value)}: must be host:port[,host:port] (IPv6: [addr]:port); ${bad.join("; ")}` };
}

const HOSTNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** What is wrong with one entry of REDIS_CLUSTER_NODES, or undefined after adding its node to `into`. */
function clusterNodeProblem(entry: string, into: ClusterNode[]): string | undefined {
  if (entry === "") return "an empty entry";
  if (entry.includes("://")) return "no scheme: host:port (TLS and credentials come from REDIS_TLS, REDIS_USERNAME, REDIS_PASSWORD)";
  const bracketed = entry.startsWith("[");
  const m = bracketed ? /^\[([^\]]*)\]:(.*)$/.exec(entry) : /^([^:]*):(.*)$/.exec(entry);
  if (!m) return bracketed ? "not [addr]:port" : "no port: host:port";
  const host = m[1]!;
  const port = m[2]!;
  if (!bracketed && port.includes(":")) return "an IPv6 address goes in brackets: [addr]:port";
  if (bracketed ? !isIPv6(host) : !HOSTNAME.test(host)) return `not a host name or address: ${JSON.stringify(host)}`;
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(n >= 1 && n <= 65535)) return `the port must be a number 1..65535, got ${JSON.stringify(port)}`;
  into.push({ host, port: n });
  return undefined;
}

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

const ENCODE_HINT = "reserved characters in a user name or password (/ ? # @ : % and spaces) must be percent-encoded (encodeURIComponent)";

/**
 * A URL as a config message may show it: hidden when it may hold credentials (an `@`), since one
 * that does not parse cannot be stripped of them.
 */
const shownUrl = (url: string) => (url.includes("@") ? "(hidden: may hold a password)" : JSON.stringify(url));

/**
 * What is wrong with a REDIS_URL, or undefined. Never the URL itself: it may carry the password, and
 * the TypeError of `new URL` holds the whole input (`input`), which an entry file's last-resort
 * handler would print. An unencoded `/`, `?` or `#` in the password ends the authority early: the
 * parse fails (the rest is read as a port), or leaves no host or a stray path; one hint for all.
 */
export function redisUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `does not parse as a URL; ${ENCODE_HINT}`;
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") return `must start with redis:// or rediss://, got ${JSON.stringify(u.protocol.slice(0, 20))}`;
  if (!u.hostname) return `has no host; ${ENCODE_HINT}`;
  if (!/^(\/[0-9]*)?$/.test(u.pathname)) return `the path must be a database number (/0); ${ENCODE_HINT}`;
  return undefined;
}

/** Host of an http(s) URL, or undefined when it is not one. */
function urlHost(url: string): string | undefined {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.hostname : undefined;
  } catch {
    return undefined;
  }
}

/** For entry files: parse or exit 2 with one message naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  try {
    return parseConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
}

/** RocketMQ credentials in the shape both our clients take, or undefined. */
export function mqCredentials(cfg: Config) {
  return cfg.MQ_ACCESS_KEY && cfg.MQ_SECRET_KEY
    ? { accessKey: cfg.MQ_ACCESS_KEY, accessSecret: cfg.MQ_SECRET_KEY }
    : undefined;
}

/**
 * Hand-backs and redeliveries a task's message may spend without an attempt (see deadLetterRisk): a
 * worker stopping hands back what it runs, and in a rolling restart the next worker may be stopping
 * too and give it straight back (lib/worker/loop.ts), or a Redis outage may cost one more.
 */
export const SPARE_DELIVERIES = 2;

/**
 * Why RocketMQ could dead-letter a task's message while the task still has attempts left, if it
 * could; logged at a worker's start. Not an error: tests set a small MQ_RETRY_MAX_TIMES to force
 * dead letters. The broker hands a message out MQ_RETRY_MAX_TIMES + 1 times, then moves it to
 * %DLQ%<group>, and lib/worker/dead-letter.ts fails its task (finish.lua "dead"). A task needs one
 * delivery per attempt (a retry hides the message for its delay: store.retry, then settler.hide,
 * and it comes back as the next delivery), plus one when its last run died with its worker (that
 * next delivery's claim fails it: claim.lua, "its runs never finished"): MAX_ATTEMPTS + 1. A shutdown's
 * hand-back, or a message given back while Redis fails, spends one more without an attempt:
 * SPARE_DELIVERIES of those are allowed for.
 */
export function deadLetterRisk(cfg: Pick<Config, "MAX_ATTEMPTS" | "MQ_RETRY_MAX_TIMES">): string | undefined {
  const allowed = cfg.MQ_RETRY_MAX_TIMES + 1;
  const needed = cfg.MAX_ATTEMPTS + 1 + SPARE_DELIVERIES;
  if (needed <= allowed) return undefined;
  return `MQ_RETRY_MAX_TIMES (${cfg.MQ_RETRY_MAX_TIMES}) lets RocketMQ deliver a task's message ${allowed} times, but MAX_ATTEMPTS ` +
    `(${cfg.MAX_ATTEMPTS}) may need ${cfg.MAX_ATTEMPTS + 1} deliveries (one per attempt, one more when the last run died with its worker) ` +
    `plus ${SPARE_DELIVERIES} for hand-backs at shutdown or redeliveries after a Redis outage: past ${allowed}, the message is ` +
    `dead-lettered and its task failed with attempts left; set MQ_RETRY_MAX_TIMES to at least ${needed - 1} ` +
    `(then run bun scripts/provision.ts: the group's retryMaxTimes is set there) or lower MAX_ATTEMPTS`;
}
