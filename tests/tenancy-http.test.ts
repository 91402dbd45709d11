// API keys and per-tenant rate limits over HTTP (in-process app.handle, real Redis and RocketMQ):
// the keys CLI, 401s, tenant isolation of tasks, the token bucket shared by API replicas, and the
// auth mode chosen from the bind address.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createApp } from "../lib/http/app.ts";
import { parseConfig, type Config } from "../lib/config.ts";
import { resolveAuthMode } from "../lib/http/auth.ts";
import { silentLogger, type Logger } from "../lib/log.ts";
import { Publisher } from "../lib/mq.ts";
import { closeRedis, connectRedis, createRedis, scanKeys } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { RateLimiter } from "../lib/tenancy/rate-limit.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { rawRequest } from "./support/raw-http.ts";

const ROOT = join(import.meta.dir, "..");

async function replica(cfg: Config, publisher: Publisher) {
  const redis = createRedis(cfg, silentLogger);
  await connectRedis(redis);
  const store = new TaskStore(redis, cfg.TASK_TTL_SECONDS, cfg.REDIS_PREFIX, cfg.STALLED_AFTER_MS);
  const tenancy = { auth: "keys" as const, apiKeys: new ApiKeys(redis, cfg.REDIS_PREFIX), limiter: new RateLimiter(redis, cfg.REDIS_PREFIX) };
  const app = createApp({ cfg, store, tasks: new TaskService(cfg, store, publisher, silentLogger), log: silentLogger, tenancy });
  return { redis, store, app };
}

function keysCli(ns: TestNamespace, ...args: string[]) {
  return keysCliEnv(ns.env, ...args);
}
function keysCliEnv(env: Record<string, string>, ...args: string[]) {
  const p = Bun.spawnSync(["bun", join(ROOT, "scripts/keys.ts"), ...args], { cwd: ROOT, env });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

let ns: TestNamespace;
let publisher: Publisher;
let a: Awaited<ReturnType<typeof replica>>;
let b: Awaited<ReturnType<typeof replica>>;

beforeAll(async () => {
  ns = await createNamespace();
  publisher = new Publisher(ns.config, silentLogger, [ns.config.MQ_TOPIC_REQUEST]);
  await publisher.start();
  a = await replica(ns.config, publisher);
  b = await replica(ns.config, publisher);
});
afterAll(async () => {
  await stopAll();
  await publisher?.close();
  for (const r of [a, b]) if (r) await closeRedis(r.redis);
  await ns?.cleanup();
});

const body = JSON.stringify({ user_id: "u1", content: "机械键盘降价了" });
const post = (app: typeof a.app, key?: string, path = "/tasks") =>
  app.handle(new Request(`http://local${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body,
  }));
const get = (app: typeof a.app, id: string, key?: string) =>
  app.handle(new Request(`http://local/tasks/${id}`, { headers: key ? { authorization: `Bearer ${key}` } : {} }));

describe("keys CLI", () => {
  test("create prints the key once; Redis holds only its SHA-256; list never shows it; revoke and update work", async () => {
    const made = keysCli(ns, "create", "--tenant", "acme", "--rate", "2.5", "--concurrency", "3", "--json");
    expect(made.code, made.err).toBe(0);
    const created = JSON.parse(made.out) as { id: string; key: string; tenant: string; limits: Record<string, number> };
    expect(created.key).toMatch(/^ak_[0-9a-f]{12}_[0-9a-f]{64}$/);
    expect(created.limits).toEqual({ rate: 2.5, burst: 3, concurrency: 3 });
    const secret = created.key.split("_")[2]!;

    // Nothing under the namespace contains the secret.
    // Keys start with the prefix or with a hash tag holding it (`{P tenant:acme}:limits`).
    for await (const batch of scanKeys(a.redis, `*${ns.redisPrefix}*`)) {
      for (const k of batch) {
        const type = await a.redis.type(k);
        const dump = type === "hash" ? JSON.stringify(await a.redis.hGetAll(k)) : type === "set" ? JSON.stringify(await a.redis.sMembers(k)) : "";
        expect(dump).not.toContain(secret);
      }
    }
    const listed = keysCli(ns, "list");
    expect(listed.code).toBe(0);
    expect(listed.out).toContain(created.id);
    expect(listed.out).toContain("acme");
    expect(listed.out).not.toContain(secret);

    expect((await post(a.app, created.key)).status).toBe(202);
    const upd = keysCli(ns, "update", created.id, "--concurrency", "0", "--json");
    expect(upd.code, upd.err).toBe(0);
    expect(JSON.parse(upd.out).limits).toEqual({ rate: 2.5, burst: 3 });

    expect(keysCli(ns, "revoke", created.id).code).toBe(0);
    const after = await post(a.app, created.key);
    expect(after.status).toBe(401);
    expect(await after.json()).toMatchObject({ error: "invalid_api_key" });
    expect(keysCli(ns, "list").out).toContain("REVOKED");
    expect(keysCli(ns, "revoke", "000000000000").code).toBe(1);
    expect(keysCli(ns, "create", "--tenant", "bad{name}").code).toBe(2);
  }, 60_000);

  test("exit codes as scripts/tasks.ts: arguments checked before connecting (2 with Redis down), Redis unreachable or failing 3, one line, no stack trace", async () => {
    const down = { ...ns.env, REDIS_URL: "redis://127.0.0.1:1" };
    for (const args of [
      ["create", "--tenant", "acme", "--rate", "fast"], ["create", "--tenant", "acme", "--burst", "1.5"], ["update", "--tenant", "acme", "--concurrency", "-1"],
      ["frobnicate"], ["list", "--nope"], [], ["create"], ["create", "--tenant", "bad{name}"], ["revoke"], ["list", "extra"], ["list", "--rate", "1"],
      ["update", "000000000000", "--tenant", "acme"],
    ]) {
      const r = keysCliEnv(down, ...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.err, args.join(" ")).toContain("usage:");
      expect(r.err).not.toContain("    at ");
    }
    expect(keysCliEnv(down, "--help").code).toBe(0);
    const unreachable = keysCliEnv(down, "list");
    expect(unreachable.code).toBe(3);
    expect(unreachable.err.trim().split("\n")).toEqual(["Redis is not reachable (REDIS_URL / REDIS_HOST / REDIS_PORT)"]);

    // An error Redis answers after the connect (here WRONGTYPE: the key list is not a set): 3, one line.
    const prefix = `${ns.redisPrefix}wrong:`;
    await a.redis.set(`${prefix}apikeys`, "not a set");
    try {
      const failing = keysCliEnv({ ...ns.env, REDIS_PREFIX: prefix }, "list");
      expect(failing.code).toBe(3);
      expect(failing.err.trim().split("\n")).toHaveLength(1);
      expect(failing.err).toContain("Redis failed: WRONGTYPE");
      expect(failing.err).not.toContain("    at ");
    } finally {
      await a.redis.del(`${prefix}apikeys`);
    }
  }, 60_000);
});

describe("AUTH_MODE=keys", () => {
  let keyA: string;
  let keyB: string;
  beforeAll(async () => {
    const keys = new ApiKeys(a.redis, ns.redisPrefix);
    keyA = (await keys.create("tenant-a")).key;
    keyB = (await keys.create("tenant-b")).key;
  });

  test("401 JSON without a key, with a malformed one, with an unknown one; before the body is even read", async () => {
    for (const key of [undefined, "nonsense", `ak_000000000000_${"0".repeat(64)}`]) {
      const res = await post(a.app, key);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain("Bearer");
      const err = (await res.json()) as { error: string; message: string };
      expect(["unauthorized", "invalid_api_key"]).toContain(err.error);
    }
    const malformed = await a.app.handle(new Request("http://local/tasks", { method: "POST", headers: { "content-type": "application/json" }, body: "{" }));
    expect(malformed.status).toBe(401);
    expect((await get(a.app, crypto.randomUUID())).status).toBe(401);
    // Outside /tasks nothing needs a key.
    expect((await a.app.handle(new Request("http://local/healthz"))).status).toBe(200);
  });

  test("a task belongs to its tenant: in the record and the message; another tenant's GET is a 404", async () => {
    const res = await post(a.app, keyA);
    expect(res.status).toBe(202);
    const { task_id } = (await res.json()) as { task_id: string };
    const rec = (await a.redis.hGetAll(a.store.keys.task(task_id))) as Record<string, string>;
    expect(rec.tenant).toBe("tenant-a");
    expect(rec.user_id).toBe("u1");
    expect(JSON.parse(rec.message!)).toMatchObject({ task_id, user_id: "u1", tenant: "tenant-a", action: "generate_profile" });

    const mine = await get(b.app, task_id, keyA);
    expect(mine.status).toBe(200);
    expect(await mine.json()).toMatchObject({ task_id, status: "queued", user_id: "u1" });
    const theirs = await get(a.app, task_id, keyB);
    expect(theirs.status).toBe(404);
    expect(await theirs.json()).toEqual({ error: "task_not_found", message: `no task ${task_id}` });
    expect((await get(a.app, "not-a-uuid", keyA)).status).toBe(400);
  });
});

describe("rate limit per tenant", () => {
  test("a token bucket shared by two API replicas: burst then 429 with Retry-After and RateLimit headers", async () => {
    const keys = new ApiKeys(a.redis, ns.redisPrefix);
    // 0.2/s: no token comes back during the test, so the count is exact whatever the box's speed.
    const { key } = await keys.create("limited", { rate: 0.2, burst: 4 });
    const answers: Response[] = [];
    for (let i = 0; i < 6; i++) answers.push(await post(i % 2 ? b.app : a.app, key));
    expect(answers.map((r) => r.status)).toEqual([202, 202, 202, 202, 429, 429]);
    expect(answers[0]!.headers.get("ratelimit-limit")).toBe("4");
    expect(answers[0]!.headers.get("ratelimit-remaining")).toBe("3");
    expect(answers[3]!.headers.get("ratelimit-remaining")).toBe("0");
    expect(answers[0]!.headers.get("ratelimit-policy")).toBe("4;w=20");
    const refused = answers[4]!;
    expect(refused.headers.get("content-type")).toContain("application/json");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(4);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(5);
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    expect(Number(refused.headers.get("ratelimit-reset"))).toBeGreaterThan(15);
    expect(await refused.json()).toMatchObject({ error: "rate_limited" });

    // Concurrent requests through both replicas: still exactly the bucket's tokens.
    const { key: k2 } = await keys.create("limited-2", { rate: 0.1, burst: 10 });
    const many = await Promise.all(Array.from({ length: 30 }, (_, i) => post(i % 2 ? b.app : a.app, k2)));
    expect(many.filter((r) => r.status === 202).length).toBe(10);
    expect(many.filter((r) => r.status === 429).length).toBe(20);
  });

  test("POST /tasks/ and /tasks/?a=1 (routed to the submit route) are limited too: burst 2, then 429 with Retry-After", async () => {
    const keys = new ApiKeys(a.redis, ns.redisPrefix);
    for (const path of ["/tasks/", "/tasks/?a=1"]) {
      const { key } = await keys.create(`slash-${path.length}`, { rate: 0.1, burst: 2 });
      const answers: Response[] = [];
      for (let i = 0; i < 4; i++) answers.push(await post(a.app, key, path));
      expect(answers.map((r) => r.status), path).toEqual([202, 202, 429, 429]);
      for (const refused of answers.slice(2)) {
        expect(Number(refused.headers.get("retry-after")), path).toBeGreaterThanOrEqual(1);
        expect(await refused.json()).toMatchObject({ error: "rate_limited" });
      }
    }
  });

  test("a rate under 0.001/s (one task per 2000 s): the policy window and the 429's message name it exactly", async () => {
    const { key } = await new ApiKeys(a.redis, ns.redisPrefix).create("slow", { rate: 0.0005, burst: 1 });
    const first = await post(a.app, key);
    expect(first.status).toBe(202);
    expect(first.headers.get("ratelimit-policy")).toBe("1;w=2000");
    const refused = await post(b.app, key);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-policy")).toBe("1;w=2000");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(1990);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(2000);
    expect(((await refused.json()) as { message: string }).message).toContain("over its rate of 0.0005/s (burst 1)");
  });

  test("a tenant without a rate gets no RateLimit headers", async () => {
    const { key } = await new ApiKeys(a.redis, ns.redisPrefix).create("free");
    const res = await post(a.app, key);
    expect(res.status).toBe(202);
    expect(res.headers.get("ratelimit-limit")).toBeNull();
  });
});

describe("auth mode from the bind address", () => {
  const logs: string[] = [];
  const log: Logger = { ...silentLogger, warn: (m: string) => void logs.push(m), child: () => log };
  const mode = (env: Record<string, string>) => resolveAuthMode(parseConfig(env), log);

  test("auto: none on loopback, keys elsewhere; explicit none elsewhere warns", () => {
    expect(parseConfig({}).API_HOST).toBe("127.0.0.1");
    expect(mode({})).toBe("none");
    expect(mode({ API_HOST: "::1" })).toBe("none");
    expect(mode({ API_HOST: "0.0.0.0" })).toBe("keys");
    expect(mode({ API_HOST: "10.1.2.3" })).toBe("keys");
    expect(mode({ API_HOST: "127.0.0.1", AUTH_MODE: "keys" })).toBe("keys");
    expect(logs).toEqual([]);
    expect(mode({ API_HOST: "0.0.0.0", AUTH_MODE: "none" })).toBe("none");
    expect(logs.length).toBe(1);
  });

  test("the API on 0.0.0.0 without AUTH_MODE requires keys", async () => {
    const port = freePort();
    const api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "0.0.0.0", AUTH_MODE: "" });
    await api.waitForLog("api listening");
    expect(api.logs("api listening")[0]!.auth).toBe("keys");
    // This namespace has keys by now (the tests above): no "none exists yet" warning.
    expect(api.raw.join("\n")).not.toContain("none exists yet");
    const res = await fetch(`http://127.0.0.1:${port}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(res.status).toBe(401);
    // Bun routes the path as sent (`/tasks/..` reaches GET /tasks/:id) while request.url holds it
    // normalised (`/`): the key is still required, before anything about the id is said.
    for (const path of ["/tasks/..", "/tasks/%2e%2e"]) {
      const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      expect(r.status, `${path}: ${r.body}`).toBe(401);
      expect(JSON.parse(r.body), path).toMatchObject({ error: "unauthorized" });
    }
    // The rate limit on the real server's router too: POST /tasks/ is the submit route.
    const { key } = await new ApiKeys(a.redis, ns.redisPrefix).create("slash-real", { rate: 0.1, burst: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await fetch(`http://127.0.0.1:${port}/tasks/`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body })).status);
    expect(statuses).toEqual([202, 202, 429]);
    await waitFor(async () => (await api.stop()) === 0, 30_000, "api to exit 0");
  }, 60_000);
});
