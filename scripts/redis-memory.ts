// Redis bytes per task in each state (MEMORY USAGE of every key the task owns, hints included), for
// a task whose content is `--content-bytes` (default 1024) bytes. Uses the configured Redis under a
// throw-away prefix and removes what it wrote.   bun scripts/redis-memory.ts [--content-bytes N]
import { loadConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { ACTION, encodeJson } from "../lib/model.ts";
import { closeRedis, connectRedis, createRedis, scanKeys, unlinkKeys } from "../lib/redis.ts";
import { send } from "../lib/scripts.ts";
import { TaskStore } from "../lib/store.ts";

const arg = process.argv.indexOf("--content-bytes");
const contentBytes = arg > 0 ? Number(process.argv[arg + 1]) : 1024;
const cfg = loadConfig();
const redis = createRedis(cfg, createLogger({ level: "warn" }));
if (!(await connectRedis(redis))) throw new Error("Redis is not reachable");
const prefix = `memtest${crypto.randomUUID().slice(0, 6)}:`;
const store = new TaskStore(redis, cfg.TASK_TTL_SECONDS, prefix, cfg.STALLED_AFTER_MS, { buckets: cfg.REDIS_BUCKETS });
const mem = async (k: string) => Number((await send(redis, k, ["MEMORY", "USAGE", k, "SAMPLES", "0"])) ?? 0);

async function bytes(id: string) {
  const per = { hash: await mem(store.keys.task(id)), status: await mem(store.keys.legacyStatus(id)), events: await mem(store.keys.events(id)) };
  return { ...per, total: per.hash + per.status + per.events };
}
const id = crypto.randomUUID();
const body = encodeJson({ task_id: id, user_id: "user123", payload: "x".repeat(contentBytes), action: ACTION }).toString("utf8");
const rows: [string, Awaited<ReturnType<typeof bytes>>][] = [];
let hint = 0;
await store.create(id, "user123", body);
rows.push(["queued (send pending: + outbox hint)", await bytes(id)]);
await store.markSent(id);
rows.push(["queued", await bytes(id)]);
await store.claim(id, crypto.randomUUID(), 60_000, "user123").then(async (c) => {
  rows.push(["running", await bytes(id)]);
  hint = await mem(store.stalledKey(id));
  if (c.kind === "claimed") {
    const token = (await redis.hGet(store.keys.task(id), "owner")) as string;
    await store.complete(id, token, { tags: ["a", "b", "c"], score: 7, reason: "a typical short reason of about sixty characters, give or take" });
  }
});
rows.push(["done (shrunk)", await bytes(id)]);
console.log(`content ${contentBytes} B, request body ${Buffer.byteLength(body)} B; Redis ${String(await send(redis, undefined, ["INFO", "server"])).match(/redis_version:(\S+)/)?.[1]}`);
for (const [state, b] of rows) console.log(`${state.padEnd(40)} hash ${b.hash} B + status ${b.status} B + events ${b.events} B = ${b.total} B`);
console.log(`a bucket zset holding one hint (stalled, while running): ${hint} B`);
for await (const batch of scanKeys(redis, `*${prefix}*`)) await unlinkKeys(redis, batch);
await closeRedis(redis);
