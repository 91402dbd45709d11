// Configuration: defaults, the original's variable names, and one message listing every bad variable.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { deafAgentRisk } from "../lib/worker/handle.ts";

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
});
