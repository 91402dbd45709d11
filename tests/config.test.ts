// Configuration: defaults, the original's variable names, and one message listing every bad variable.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, deadLetterRisk, parseConfig } from "../lib/config.ts";
import { clusterNodes } from "../lib/redis.ts";
import { deafAgentRisk } from "../lib/worker/handle.ts";

/** The ConfigError parseConfig throws for `env` (the test fails when it throws none). */
function configError(env: Record<string, string>): ConfigError {
  try {
    parseConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error(`accepted: ${JSON.stringify(env)}`);
}

describe("config", () => {
  test("defaults match the original service", () => {
    const c = parseConfig({});
    expect(c).toMatchObject({
      REDIS_HOST: "127.0.0.1", REDIS_PORT: 6379, MQ_ENDPOINT: "127.0.0.1:8081", MQ_TOPIC_REQUEST: "TopicTest",
      MQ_TOPIC_RESULT: "TopicResult", API_PORT: 8000, AGENT_DELAY_MS: 3000, WORKER_CONCURRENCY: 64,
      MAX_CONTENT_BYTES: 32768, TASK_TTL_SECONDS: 86400,
    });
  });

  test("a worker warns when a deaf agent could outlive its lease: TASK_ABORT_GRACE_MS not under the self-fence margin", () => {
    expect(deafAgentRisk(parseConfig({}))).toBeUndefined(); // 5 s grace, a 60 s lease's 10 s margin
    expect(deafAgentRisk(parseConfig({ MQ_INVISIBLE_MS: "10000" }))).toContain("TASK_ABORT_GRACE_MS (5000 ms) is not under the self-fence margin");
    expect(deafAgentRisk(parseConfig({ MQ_INVISIBLE_MS: "10000", TASK_ABORT_GRACE_MS: "1500" }))).toBeUndefined();
  });

  test("every bad variable is named at once; secret values are never shown", () => {
    let err: ConfigError | undefined;
    try {
      parseConfig({ REDIS_PORT: "abc", API_PORT: "70000", LOG_LEVEL: "loud", MQ_SECRET_KEY: "s3cr3t-value" });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.length).toBe(4);
    expect(err!.message).toContain("REDIS_PORT");
    expect(err!.message).toContain("API_PORT");
    expect(err!.message).toContain("LOG_LEVEL");
    expect(err!.message).toContain("MQ_ACCESS_KEY and MQ_SECRET_KEY must be set together");
    expect(err!.message).not.toContain("s3cr3t-value");
  });

  test("an entry file exits with code 2 and one message on bad configuration", () => {
    // A regression that starts the worker instead of exiting would hang the whole run: killed after 30 s.
    const p = Bun.spawnSync(["bun", join(import.meta.dir, "..", "worker.ts")], {
      env: { ...process.env, WORKER_CONCURRENCY: "0", REDIS_PASSWORD: "", MQ_ACCESS_KEY: "ak" },
      timeout: 30_000,
      killSignal: "SIGKILL",
    });
    expect(p.exitedDueToTimeout ?? false, p.stderr.toString()).toBe(false);
    expect(p.exitCode).toBe(2);
    const out = p.stderr.toString();
    expect(out).toContain("WORKER_CONCURRENCY");
    expect(out).toContain("MQ_ACCESS_KEY and MQ_SECRET_KEY");
  });
  test("TASK_TTL_SECONDS must outlast a run and the longest retry delay; the message names both (issue 8 #9)", () => {
    let err: ConfigError | undefined;
    try {
      parseConfig({ TASK_TTL_SECONDS: "60", TASK_TIMEOUT_MS: "600000" });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toContain("TASK_TTL_SECONDS=60");
    expect(err!.message).toContain("TASK_TIMEOUT_MS=600000");
    expect(parseConfig({ TASK_TTL_SECONDS: "3600", TASK_TIMEOUT_MS: "600000" }).TASK_TTL_SECONDS).toBe(3600);
  });

  test("a REDIS_URL whose password has / or # unencoded: exit 2 naming REDIS_URL and percent-encoding; the password printed nowhere", () => {
    const password = "Zx9/q+Lm3Tt8==";
    const urls = [`redis://:${password}@127.0.0.1:6379`, `redis://app:Zx9#q+Lm3Tt8==@127.0.0.1:6379`];
    const root = join(import.meta.dir, "..");
    for (const url of urls)
      for (const entry of [["api.ts"], ["worker.ts"], ["scripts/tasks.ts", "stats"]]) {
        const p = Bun.spawnSync(["bun", join(root, entry[0]!), ...entry.slice(1)], {
          env: { ...process.env, REDIS_URL: url, REDIS_PASSWORD: "", API_PORT: "0" },
          timeout: 30_000,
          killSignal: "SIGKILL",
        });
        const out = p.stdout.toString() + p.stderr.toString();
        const what = `${entry.join(" ")}: ${out}`;
        expect(p.exitedDueToTimeout ?? false, what).toBe(false);
        expect(p.exitCode, what).not.toBe(0);
        expect(out, what).toContain("REDIS_URL");
        expect(out, what).toContain("percent-encoded");
        expect(out, what).not.toContain("Zx9");
        expect(out, what).not.toContain("Lm3Tt8");
      }
    // Encoded, the same password is accepted.
    expect(parseConfig({ REDIS_URL: `redis://:${encodeURIComponent(password)}@127.0.0.1:6379` }).REDIS_URL).toContain("Zx9%2F");
  }, 120_000);

  test("an OTEL_EXPORTER_OTLP_ENDPOINT or LLM_BASE_URL that does not parse is named without its value (it may hold a password)", () => {
    let err: ConfigError | undefined;
    try {
      parseConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://u:Zx9/q+Lm3@127.0.0.1:4318", LLM_BASE_URL: "http://u:Zx9/q+Lm3@h/v1", LLM_API_KEY: "k" });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toContain("OTEL_EXPORTER_OTLP_ENDPOINT");
    expect(err!.message).toContain("LLM_BASE_URL");
    expect(err!.message).not.toContain("Zx9");
  });

  test("ADMIN_TOKEN shorter than 32 characters is refused, without showing it", () => {
    expect(() => parseConfig({ ADMIN_TOKEN: "short-token-31-characters-long!" })).toThrow("ADMIN_TOKEN=(hidden): must be at least 32 characters");
    try {
      parseConfig({ ADMIN_TOKEN: "short-token-31-characters-long!" });
    } catch (e) {
      expect((e as Error).message).not.toContain("short-token");
    }
    expect(parseConfig({ ADMIN_TOKEN: "x".repeat(32) }).ADMIN_TOKEN).toHaveLength(32);
  });

  test("REDIS_PREFIX with a brace is refused (it would split a task's keys over Redis Cluster slots)", () => {
    expect(() => parseConfig({ REDIS_PREFIX: "app{1}:" })).toThrow("REDIS_PREFIX");
  });

  test("an integer in exponent or decimal form is read whole, not truncated by parseInt (MAX_CONTENT_BYTES=1e6 was 1)", () => {
    const c = parseConfig({
      MAX_CONTENT_BYTES: "1e6", WORKER_CONCURRENCY: "1e3", SHUTDOWN_TIMEOUT_MS: "3e4", REDIS_PORT: "6.379e3",
      MQ_INVISIBLE_MS: "1.5E4", RETRY_BASE_MS: "2000.0", API_PORT: "+8080", WORKER_METRICS_PORT: "9.1e3",
    });
    expect(c).toMatchObject({
      MAX_CONTENT_BYTES: 1_000_000, WORKER_CONCURRENCY: 1_000, SHUTDOWN_TIMEOUT_MS: 30_000, REDIS_PORT: 6379,
      MQ_INVISIBLE_MS: 15_000, RETRY_BASE_MS: 2_000, API_PORT: 8080, WORKER_METRICS_PORT: 9100,
    });
    // Empty is unset (VAR= in an env file): the default, never 0.
    const empty = parseConfig({ MAX_CONTENT_BYTES: "", WORKER_METRICS_PORT: "" });
    expect(empty.MAX_CONTENT_BYTES).toBe(32768);
    expect(empty.WORKER_METRICS_PORT).toBeUndefined();
    // Read whole, then range-checked: 1e7 is past MAX_CONTENT_BYTES's maximum, not 1.
    expect(configError({ MAX_CONTENT_BYTES: "1e7" }).message).toContain("MAX_CONTENT_BYTES=\"1e7\": Expected integer to be less or equal to 4194304");
  });

  test("an integer variable that is not a whole number is refused, named with its value, once", () => {
    for (const bad of ["2.5", "12abc", " 7", "7 ", "0x10", "1e-3", "1e400", "Infinity", "true", "1_000", "-", ".", "e3"]) {
      const err = configError({ WORKER_CONCURRENCY: bad });
      expect(err.problems, bad).toEqual([`WORKER_CONCURRENCY=${JSON.stringify(bad)}: not a whole number (decimal digits, an exponent allowed: 1e6)`]);
    }
    // The optional one too, and every bad variable at once with the other problems.
    const err = configError({ WORKER_METRICS_PORT: "9100.5", REDIS_PORT: "6379x", LOG_LEVEL: "loud" });
    expect(err.problems).toHaveLength(3);
    expect(err.message).toContain('WORKER_METRICS_PORT="9100.5"');
    expect(err.message).toContain('REDIS_PORT="6379x"');
    expect(err.message).toContain("LOG_LEVEL");
  });

  test("REDIS_CLUSTER_NODES is a list of host:port checked at start-up; IPv6 in brackets, given to the client without them", () => {
    const nodes = (v: string) => clusterNodes(parseConfig({ REDIS_CLUSTER_NODES: v }));
    expect(nodes("127.0.0.1:7000,127.0.0.1:7001")).toEqual([{ host: "127.0.0.1", port: 7000 }, { host: "127.0.0.1", port: 7001 }]);
    expect(nodes(" redis-1:6379 , redis_2.internal:6380 ")).toEqual([{ host: "redis-1", port: 6379 }, { host: "redis_2.internal", port: 6380 }]);
    expect(nodes("[::1]:7000,[fd00::11]:7001")).toEqual([{ host: "::1", port: 7000 }, { host: "fd00::11", port: 7001 }]);
    expect(clusterNodes(parseConfig({}))).toEqual([]);

    const bad: [string, string][] = [
      ["a:70o0", "the port must be a number 1..65535"],
      ["a:0", "the port must be a number 1..65535"],
      ["a:65536", "the port must be a number 1..65535"],
      ["a:", "the port must be a number 1..65535"],
      ["a", "no port"],
      ["redis://a:7000", "no scheme"],
      [" , ", "an empty entry"],
      ["a:7000,", "an empty entry"],
      ["a:7000,,b:7000", "an empty entry"],
      ["::1:7000", "an IPv6 address goes in brackets"],
      ["[::1]", "not [addr]:port"],
      ["[not-ipv6]:7000", "not a host name or address"],
      [":7000", "not a host name or address"],
      ["a b:7000", "not a host name or address"],
    ];
    for (const [v, why] of bad) {
      const err = configError({ REDIS_CLUSTER_NODES: v });
      expect(err.problems, v).toHaveLength(1);
      expect(err.problems[0], v).toStartWith(`REDIS_CLUSTER_NODES=${JSON.stringify(v)}: must be host:port`);
      expect(err.problems[0], v).toContain(why);
    }
    // A URL with credentials is not echoed.
    const err = configError({ REDIS_CLUSTER_NODES: "redis://app:Zx9pw@10.0.0.1:7000" });
    expect(err.message).toContain("REDIS_CLUSTER_NODES=(hidden");
    expect(err.message).not.toContain("Zx9pw");
    // A Config built without parseConfig gets the same error from the client, not a NaN port.
    expect(() => clusterNodes({ ...parseConfig({}), REDIS_CLUSTER_NODES: "a:70o0" })).toThrow(ConfigError);
  });

  test("a bad REDIS_CLUSTER_NODES stops an entry file with code 2 naming it (it used to retry forever)", () => {
    const p = Bun.spawnSync(["bun", join(import.meta.dir, "..", "worker.ts")], {
      env: { ...process.env, REDIS_CLUSTER_NODES: "127.0.0.1:70o0", REDIS_PASSWORD: "" },
      timeout: 30_000,
      killSignal: "SIGKILL",
    });
    expect(p.exitedDueToTimeout ?? false, p.stderr.toString()).toBe(false);
    expect(p.exitCode).toBe(2);
    expect(p.stderr.toString()).toContain('REDIS_CLUSTER_NODES="127.0.0.1:70o0"');
  }, 40_000);

  test("a worker warns when RocketMQ could dead-letter a task with attempts left: MQ_RETRY_MAX_TIMES below MAX_ATTEMPTS + 2", () => {
    expect(deadLetterRisk(parseConfig({}))).toBeUndefined(); // 3 attempts, 17 deliveries
    // 3 attempts need 4 deliveries (the last run may die with its worker), plus 2 hand-backs: 6 = MQ_RETRY_MAX_TIMES 5 + 1.
    expect(deadLetterRisk(parseConfig({ MAX_ATTEMPTS: "3", MQ_RETRY_MAX_TIMES: "5" }))).toBeUndefined();
    const w = deadLetterRisk(parseConfig({ MAX_ATTEMPTS: "3", MQ_RETRY_MAX_TIMES: "4" }));
    expect(w).toContain("MQ_RETRY_MAX_TIMES (4) lets RocketMQ deliver a task's message 5 times");
    expect(w).toContain("dead-lettered and its task failed with attempts left");
    expect(w).toContain("set MQ_RETRY_MAX_TIMES to at least 5");
    expect(deadLetterRisk(parseConfig({ MAX_ATTEMPTS: "100" }))).toContain("at least 102");
    // Only a warning: tests force dead letters with a small MQ_RETRY_MAX_TIMES.
    expect(parseConfig({ MAX_ATTEMPTS: "100", MQ_RETRY_MAX_TIMES: "0" }).MQ_RETRY_MAX_TIMES).toBe(0);
  });
});
