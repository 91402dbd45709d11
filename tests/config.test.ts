// Configuration: defaults, the original's variable names, and one message listing every bad variable.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../lib/config.ts";

describe("config", () => {
  test("defaults match the original service", () => {
    const c = parseConfig({});
    expect(c).toMatchObject({
      REDIS_HOST: "127.0.0.1", REDIS_PORT: 6379, MQ_ENDPOINT: "127.0.0.1:8081", MQ_TOPIC_REQUEST: "TopicTest",
      MQ_TOPIC_RESULT: "TopicResult", API_PORT: 8000, AGENT_DELAY_MS: 3000, WORKER_CONCURRENCY: 64,
      MAX_CONTENT_BYTES: 32768, TASK_TTL_SECONDS: 86400,
    });
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
    const p = Bun.spawnSync(["bun", join(import.meta.dir, "..", "worker.ts")], {
      env: { ...process.env, WORKER_CONCURRENCY: "0", REDIS_PASSWORD: "", MQ_ACCESS_KEY: "ak" },
    });
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

  test("REDIS_PREFIX with a brace is refused (it would split a task's keys over Redis Cluster slots)", () => {
    expect(() => parseConfig({ REDIS_PREFIX: "app{1}:" })).toThrow("REDIS_PREFIX");
  });
});
