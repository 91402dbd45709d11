// Listing (issue 10, item 6): GET /tasks?user_id=…&status=…&limit=…&cursor=…, in-process against
// real Redis and RocketMQ. Pages through 250 tasks of one user without a gap or a repeat, newest
// first (also while new tasks arrive), filters by status, lists no other user's or tenant's tasks,
// drops entries whose task is gone, trims past USER_TASKS_MAX, and answers 400 JSON to bad params.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../lib/http/app.ts";
import { parseConfig, type Config } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import type { TaskPage } from "../lib/model.ts";
import { TaskService } from "../lib/submit.ts";
import { ApiKeys } from "../lib/tenancy/api-keys.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
let app: ReturnType<typeof createApp>;
let cfg: Config;
const USER = "list-user";
/** USER's task ids in submission order (oldest first) */
const submitted: string[] = [];

function appWith(over: Record<string, string> = {}, tenancy?: Parameters<typeof createApp>[0]["tenancy"]) {
  const c = parseConfig({ ...sys.ns.env, ...over });
  return createApp({ cfg: c, store: sys.store, tasks: new TaskService(c, sys.store, sys.publisher, silentLogger), log: silentLogger, tenancy });
}

const postTo = async (a: ReturnType<typeof createApp>, user_id: string, headers: Record<string, string> = {}) => {
  const res = await a.handle(new Request("http://local/tasks", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ user_id, content: "机械键盘降价了" }),
  }));
  expect(res.status).toBe(202);
  return ((await res.json()) as { task_id: string }).task_id;
};

async function list(query: Record<string, string>, a = app, headers: Record<string, string> = {}) {
  const res = await a.handle(new Request(`http://local/tasks?${new URLSearchParams(query)}`, { headers }));
  return { status: res.status, body: (await res.json()) as TaskPage & { error?: string; field?: string } };
}

/** Every page of a listing, following next_cursor; the ids in the order given. */
async function walk(query: Record<string, string>, a = app, headers: Record<string, string> = {}) {
  const ids: string[] = [];
  const created: number[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const { status, body } = await list({ ...query, ...(cursor ? { cursor } : {}) }, a, headers);
    expect(status).toBe(200);
    for (const t of body.tasks) {
      ids.push(t.task_id);
      created.push(Date.parse(t.created_at!));
    }
    cursor = body.next_cursor;
    if (++pages > 1_000) throw new Error("listing does not end");
  } while (cursor);
  return { ids, created, pages };
}

beforeAll(async () => {
  sys = await testSystem();
  cfg = sys.ns.config;
  app = appWith();
  // 250 tasks of one user, 50 at a time (one batch of sends each), and a few of another user.
  for (let i = 0; i < 250; i += 50) {
    const batch = await Promise.all(Array.from({ length: 50 }, () => postTo(app, USER)));
    submitted.push(...batch);
  }
  for (let i = 0; i < 5; i++) await postTo(app, "someone-else");
}, 120_000);
afterAll(async () => {
  await sys?.close();
}, 60_000);

describe("GET /tasks", () => {
  test("pages through 250 tasks of one user: no gap, no repeat, newest first (limit 100 and 7)", async () => {
    for (const limit of ["100", "7"]) {
      const { ids, created, pages } = await walk({ user_id: USER, limit });
      expect(new Set(ids).size).toBe(ids.length); // no repeat
      expect([...ids].sort()).toEqual([...submitted].sort()); // no gap, nothing else
      for (let i = 1; i < created.length; i++) expect(created[i]!).toBeLessThanOrEqual(created[i - 1]!); // newest first
      expect(pages).toBe(Math.ceil(250 / Number(limit)));
    }
    // The default page size is 20.
    expect((await list({ user_id: USER })).body.tasks).toHaveLength(20);
  }, 60_000);

  test("tasks submitted while paging are not listed twice and do not shift the pages", async () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    const added: string[] = [];
    do {
      const { body } = await list({ user_id: USER, limit: "60", ...(cursor ? { cursor } : {}) });
      ids.push(...body.tasks.map((t) => t.task_id));
      cursor = body.next_cursor;
      added.push(await postTo(app, USER)); // a newer task after every page
    } while (cursor);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => !added.includes(id)).sort()).toEqual([...submitted].sort());
    submitted.push(...added);
  }, 60_000);

  test("status filter; another user's tasks are not listed", async () => {
    // Five of USER's tasks run to done through the store's own transitions (no worker in this file).
    const doneIds = submitted.slice(10, 15);
    for (const id of doneIds) {
      const token = crypto.randomUUID();
      expect((await sys.store.claim(id, token, 30_000, USER)).kind).toBe("claimed");
      expect(await sys.store.complete(id, token, { tags: ["t"], score: 1, reason: "r" })).toBe("written");
    }
    const done = await walk({ user_id: USER, status: "done", limit: "2" });
    expect([...done.ids].sort()).toEqual([...doneIds].sort());
    for (let i = 1; i < done.created.length; i++) expect(done.created[i]!).toBeLessThanOrEqual(done.created[i - 1]!); // newest first
    const queued = await walk({ user_id: USER, status: "queued", limit: "100" });
    expect(queued.ids).toHaveLength(submitted.length - doneIds.length);
    expect(queued.ids.some((id) => doneIds.includes(id))).toBe(false);
    expect((await list({ user_id: USER, status: "failed" })).body).toEqual({ tasks: [], next_cursor: null });

    const other = await walk({ user_id: "someone-else" });
    expect(other.ids).toHaveLength(5);
    expect(other.ids.some((id) => submitted.includes(id))).toBe(false);
    for (const id of other.ids) expect((await sys.store.get(id))?.user_id).toBe("someone-else");
    expect((await list({ user_id: "nobody" })).body).toEqual({ tasks: [], next_cursor: null });
  }, 60_000);

  test("with API keys, the tenant comes from the key: the same user_id in another tenant is another user", async () => {
    const keys = new ApiKeys(sys.redis, cfg.REDIS_PREFIX);
    const [a, b] = await Promise.all([keys.create("list-a"), keys.create("list-b")]);
    const keyed = appWith({ AUTH_MODE: "keys" }, { auth: "keys", apiKeys: keys });
    const auth = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });
    const mine = [await postTo(keyed, USER, auth(a)), await postTo(keyed, USER, auth(a))];
    const theirs = await postTo(keyed, USER, auth(b));
    expect((await walk({ user_id: USER }, keyed, auth(a))).ids.sort()).toEqual([...mine].sort());
    expect((await walk({ user_id: USER }, keyed, auth(b))).ids).toEqual([theirs]);
    // Without a key: 401, as on every /tasks route.
    expect((await list({ user_id: USER }, keyed)).status).toBe(401);
    // The keyless listing of USER has none of them.
    expect((await walk({ user_id: USER, limit: "100" })).ids.some((id) => [...mine, theirs].includes(id))).toBe(false);
  }, 30_000);

  test("an entry whose task is gone is not listed, and dropped; the index is capped at USER_TASKS_MAX", async () => {
    const id = submitted[0]!;
    await sys.redis.del([sys.store.keys.task(id), sys.store.keys.legacyStatus(id)]); // as if expired
    const index = sys.tasks.index.key("", USER);
    const all = await walk({ user_id: USER, limit: "100" });
    expect(all.ids.includes(id)).toBe(false);
    expect(all.ids).toHaveLength(submitted.length - 1);
    expect(await sys.redis.zScore(index, id)).toBeNull();
    expect(await sys.redis.ttl(index)).toBeGreaterThan(cfg.TASK_TTL_SECONDS);

    const capped = appWith({ USER_TASKS_MAX: "3" });
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await postTo(capped, "capped-user"));
    // (One POST after the other, each with a RocketMQ send: no two share a millisecond.)
    expect((await walk({ user_id: "capped-user" }, capped)).ids).toEqual(ids.slice(2).reverse());
  }, 30_000);

  test("bad parameters: 400 JSON naming the parameter", async () => {
    const cases: [string, string][] = [
      ["", "user_id"],
      ["user_id=", "user_id"],
      ["user_id=%20%20", "user_id"],
      [`user_id=${"x".repeat(129)}`, "user_id"],
      ["user_id=u&user_id=v", "user_id"],
      ["user_id=u&status=nope", "status"],
      ["user_id=u&limit=0", "limit"],
      ["user_id=u&limit=101", "limit"],
      ["user_id=u&limit=abc", "limit"],
      ["user_id=u&limit=1.0", "limit"],
      ["user_id=u&limit=", "limit"],
      ["user_id=u&limit=5&limit=6", "limit"],
      ["user_id=u&cursor=abc", "cursor"],
      ["user_id=u&cursor=", "cursor"],
    ];
    for (const [query, field] of cases) {
      const res = await app.handle(new Request(`http://local/tasks?${query}`));
      const body = (await res.json()) as { error: string; field?: string; message: string };
      expect({ query, status: res.status, error: body.error, field: body.field }).toEqual({ query, status: 400, error: "invalid_query", field });
      expect(res.headers.get("content-type")).toContain("application/json");
    }
  });
});
