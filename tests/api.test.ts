// The HTTP API in-process (app.handle), against real Redis and RocketMQ: accepted tasks, the
// bad-input table, and 503s when a dependency is down.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../lib/http/app.ts";
import { parseConfig, type Config } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { Publisher } from "../lib/mq.ts";
import { closeRedis, connectRedis, createRedis, scanKeys } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";

function build(cfg: Config) {
  const redis = createRedis(cfg, silentLogger);
  const publisher = new Publisher(cfg, silentLogger, [cfg.MQ_TOPIC_REQUEST]);
  const store = TaskStore.fromConfig(redis, cfg);
  const app = createApp({ cfg, store, tasks: new TaskService(cfg, store, publisher, silentLogger), log: silentLogger });
  return { redis, publisher, store, app, close: async () => { await publisher.close(); await closeRedis(redis); } };
}

const post = (app: ReturnType<typeof build>["app"], body: string | undefined, headers: Record<string, string> = { "content-type": "application/json" }) =>
  app.handle(new Request("http://local/tasks", { method: "POST", headers, body }));

let ns: TestNamespace;
let sys: ReturnType<typeof build>;

beforeAll(async () => {
  ns = await createNamespace();
  sys = build(parseConfig({ ...ns.env, MAX_CONTENT_BYTES: "1024" }));
  await connectRedis(sys.redis);
  await sys.publisher.start();
}, 60_000);
afterAll(async () => {
  await sys?.close();
  await ns?.cleanup();
}, 60_000);

describe("POST /tasks", () => {
  test("accepts a task: 202, a UUID, status queued in Redis, nothing left in the outbox", async () => {
    const res = await post(sys.app, JSON.stringify({ user_id: "user123", content: "机械键盘降价了" }));
    expect(res.status).toBe(202);
    const body = (await res.json()) as { task_id: string; status: string };
    expect(body.status).toBe("queued");
    expect(body.task_id).toMatch(/^[0-9a-f-]{36}$/);
    const view = await sys.store.get(body.task_id);
    expect(view?.status).toBe("queued");
    expect(view?.user_id).toBe("user123");
    expect(await sys.redis.get(sys.store.keys.legacyStatus(body.task_id))).toBe("queued");
    expect(await sys.redis.zScore(sys.store.outboxKey(body.task_id), body.task_id)).toBeNull();

    const got = await sys.app.handle(new Request(`http://local/tasks/${body.task_id}`));
    expect(got.status).toBe(200);
    const task = (await got.json()) as Record<string, unknown>;
    expect(task).toMatchObject({ task_id: body.task_id, status: "queued", result: null, attempts: 0 });
    expect(typeof task.created_at).toBe("string");
  });

  const big = "x".repeat(1025);
  const cases: [string, string | undefined, Record<string, string> | undefined, number, string, string?][] = [
    ["malformed JSON", "{not json", undefined, 400, "malformed_json"],
    ["truncated JSON", '{"user_id":"u","content":"c"', undefined, 400, "malformed_json"],
    ["JSON array instead of object", "[1,2]", undefined, 422, "invalid_body"],
    ["JSON string instead of object", '"hello"', undefined, 422, "invalid_body"],
    ["missing user_id", JSON.stringify({ content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["missing content", JSON.stringify({ user_id: "u" }), undefined, 422, "invalid_body", "content"],
    ["user_id not a string", JSON.stringify({ user_id: 42, content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["content not a string", JSON.stringify({ user_id: "u", content: { a: 1 } }), undefined, 422, "invalid_body", "content"],
    ["empty user_id", JSON.stringify({ user_id: "", content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["blank user_id", JSON.stringify({ user_id: " \t ", content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["user_id of 129 characters outside the BMP (258 UTF-16 units)", JSON.stringify({ user_id: "😀".repeat(129), content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["user_id over 128 characters", JSON.stringify({ user_id: "u".repeat(129), content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["empty content", JSON.stringify({ user_id: "u", content: "" }), undefined, 422, "invalid_body", "content"],
    ["content over the byte limit", JSON.stringify({ user_id: "u", content: big }), undefined, 413, "content_too_large"],
    ["multi-byte content over the byte limit", JSON.stringify({ user_id: "u", content: "键".repeat(400) }), undefined, 413, "content_too_large"],
    ["user_id null", JSON.stringify({ user_id: null, content: "c" }), undefined, 422, "invalid_body", "user_id"],
    ["text/plain content type", JSON.stringify({ user_id: "u", content: "c" }), { "content-type": "text/plain" }, 415, "unsupported_media_type"],
    ["form content type", "user_id=u&content=c", { "content-type": "application/x-www-form-urlencoded" }, 415, "unsupported_media_type"],
    ["no content type", JSON.stringify({ user_id: "u", content: "c" }), {}, 415, "unsupported_media_type"],
    ["empty body", "", undefined, 400, "malformed_json"],
    ["body over the limit", JSON.stringify({ user_id: "u", content: "y".repeat(20_000) }), { "content-type": "application/json", "content-length": "20027" }, 413, "body_too_large"],
    ["JSON null", "null", undefined, 422, "invalid_body"],
  ];
  for (const [name, body, headers, status, error, field] of cases) {
    test(`bad input: ${name} -> ${status} ${error}`, async () => {
      const res = await post(sys.app, body, headers);
      expect(res.status).toBe(status);
      expect(res.headers.get("content-type")).toContain("application/json");
      const json = (await res.json()) as { error: string; message: string; field?: string };
      expect(json.error).toBe(error);
      expect(json.message.length).toBeGreaterThan(5);
      // The README promises `field` with invalid_body: required, exactly, wherever the case names one.
      if (field) expect(json.field).toBe(field);
      if (status !== 422) expect(json.field).toBeUndefined();
    });
  }

  test("a user_id of 128 characters outside the BMP is accepted: lengths count characters, as JSON Schema and pydantic do", async () => {
    const res = await post(sys.app, JSON.stringify({ user_id: "😀".repeat(128), content: "c" }));
    expect(res.status).toBe(202);
  });

  test("unknown fields are ignored, as the original (pydantic) did", async () => {
    const res = await post(sys.app, JSON.stringify({ user_id: "u2", content: "c", extra: true }));
    expect(res.status).toBe(202);
  });
});

describe("GET /tasks/:id", () => {
  test("an id that is not a task id -> 400 JSON", async () => {
    const res = await sys.app.handle(new Request("http://local/tasks/not-a-uuid"));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("invalid_task_id");
  });
  test("an unknown id -> 404 JSON", async () => {
    const res = await sys.app.handle(new Request(`http://local/tasks/${crypto.randomUUID()}`));
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toBe("task_not_found");
  });
  test("a known path with another method -> 405 JSON with Allow", async () => {
    for (const [method, path, allow] of [["PUT", "/tasks", "GET, HEAD, POST"], ["DELETE", `/tasks/${crypto.randomUUID()}`, "GET, HEAD"], ["POST", "/healthz", "GET, HEAD"], ["GET", `/tasks/${crypto.randomUUID()}/cancel`, "POST"]] as const) {
      const res = await sys.app.handle(new Request(`http://local${path}`, { method }));
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe(allow);
      expect(((await res.json()) as { error: string }).error).toBe("method_not_allowed");
    }
  });
  test("an unknown route -> 404 JSON", async () => {
    const res = await sys.app.handle(new Request("http://local/nope"));
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toBe("not_found");
  });
});

describe("health and docs", () => {
  test("/healthz, /readyz and /docs", async () => {
    expect((await sys.app.handle(new Request("http://local/healthz"))).status).toBe(200);
    const ready = await sys.app.handle(new Request("http://local/readyz"));
    expect(await ready.json()).toEqual({ status: "ready", redis: "ok", rocketmq: "ok" });
    const spec = await sys.app.handle(new Request("http://local/docs/json"));
    expect(spec.status).toBe(200);
    const doc = (await spec.json()) as { paths: Record<string, any> };
    expect(Object.keys(doc.paths).sort()).toEqual(["/healthz", "/readyz", "/tasks", "/tasks/{id}", "/tasks/{id}/cancel", "/tasks/{id}/events"]);
    // What issue 9 found untrue: form bodies we refuse, a plain-string id, undocumented errors.
    expect(Object.keys(doc.paths["/tasks"].post.requestBody.content)).toEqual(["application/json"]);
    expect(doc.paths["/tasks/{id}"].get.parameters[0].schema).toEqual({ type: "string", format: "uuid" });
    // 401 and 429: API keys and rate limits (AUTH_MODE=keys), documented though a loopback API without keys never answers them.
    // 200 and 409: Idempotency-Key replays and conflicts (tests/lifecycle-idempotency.test.ts).
    expect(Object.keys(doc.paths["/tasks"].post.responses).sort()).toEqual(["200", "202", "400", "401", "409", "413", "415", "422", "429", "503"]);
    expect(Object.keys(doc.paths["/tasks/{id}/cancel"].post.responses).sort()).toEqual(["202", "400", "401", "404", "409", "503"]);
    expect(Object.keys(doc.paths["/tasks/{id}"].get.responses).sort()).toEqual(["200", "400", "401", "404", "503"]);
  });
});

describe("dependencies down", () => {
  test("RocketMQ unreachable: 503 with Retry-After, and no task left looking queued", async () => {
    const down = build(parseConfig({ ...ns.env, MQ_ENDPOINT: "127.0.0.1:1", MQ_REQUEST_TIMEOUT_MS: "1000" }));
    await connectRedis(down.redis);
    try {
      const res = await post(down.app, JSON.stringify({ user_id: "mq-down-user", content: "mq down" }));
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("5");
      expect(((await res.json()) as { error: string }).error).toBe("rocketmq_unavailable");
      // Every task key of the namespace: none is queued (the refused one is a tombstone, lib/lua/abandon.lua).
      const queued: string[] = [];
      for await (const batch of scanKeys(down.redis, `{${ns.redisPrefix}task:*:status}:task`)) {
        for (const key of batch) {
          const [status, user] = await down.redis.hmGet(key, ["status", "user_id"]);
          if (status === "queued" && user === "mq-down-user") queued.push(key);
        }
      }
      expect(queued).toEqual([]);
      for (let b = 0; b < down.store.keys.buckets; b++) expect(await down.redis.zCard(down.store.keys.outbox(b))).toBe(0);
      const ready = await down.app.handle(new Request("http://local/readyz"));
      expect(ready.status).toBe(503);
    } finally {
      await down.close();
    }
  }, 30_000);

  test("Redis unreachable: 503 with Retry-After", async () => {
    const down = build(parseConfig({ ...ns.env, REDIS_URL: "redis://127.0.0.1:1" }));
    void connectRedis(down.redis, 500);
    try {
      const res = await post(down.app, JSON.stringify({ user_id: "u", content: "redis down" }));
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("5");
      expect(((await res.json()) as { error: string }).error).toBe("redis_unavailable");
      const get = await down.app.handle(new Request(`http://local/tasks/${crypto.randomUUID()}`));
      expect(get.status).toBe(503);
    } finally {
      down.redis.destroy();
      await down.publisher.close();
    }
  }, 30_000);
});
