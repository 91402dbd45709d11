// `bun scripts/spans.ts [--last N]`: where finished tasks spent their time, from the timestamps the
// tasks keep in Redis (under REDIS_PREFIX): created -> started (the request message's way: API send,
// broker, the worker's receive, the claim) and started -> finished (the agent, the result message, the
// finish script). With load.ts's end-to-end figures (which end when the load generator receives the
// result message) this tells a slow system from a slow result consumer. --last N: only the N tasks
// created last (leave a warm-up run out). docs/performance.md, "The long tail".
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis, scanKeys } from "../lib/redis.ts";
import { send } from "../lib/scripts.ts";

const { values } = parseArgs({ options: { last: { type: "string" }, worst: { type: "string", default: "10" } } });
const cfg = loadConfig();
const redis = createRedis(cfg, silentLogger);
if (!(await connectRedis(redis))) {
  console.error("Redis not reachable");
  process.exit(1);
}
const rows: { id: string; created: number; wait: number; run: number }[] = [];
// Task hashes are `{P task:<id>:status}:task` (lib/keys.ts): SCAN's glob treats braces literally.
const pattern = `{${cfg.REDIS_PREFIX.replace(/[*?[\]\\]/g, "\\$&")}task:*:status}:task`;
for await (const keys of scanKeys(redis, pattern, 1000)) {
  const replies = await Promise.all(keys.map((k) => send<(string | null)[]>(redis, k, ["HMGET", k, "created_at", "started_at", "finished_at"])));
  keys.forEach((k, i) => {
    const [c, s, f] = replies[i]!.map(Number);
    const id = k.slice(k.lastIndexOf("task:") + 5, k.lastIndexOf(":status}"));
    if (c && s && f) rows.push({ id, created: c, wait: s - c, run: f - s });
  });
}
await closeRedis(redis);
rows.sort((x, y) => x.created - y.created);
const picked = values.last ? rows.slice(-Number(values.last)) : rows;
if (!picked.length) {
  console.error(`no finished task under ${cfg.REDIS_PREFIX || "(no prefix)"}`);
  process.exit(1);
}
const pct = (xs: number[]) => {
  const a = [...xs].sort((p, q) => p - q);
  const at = (q: number) => a[Math.min(a.length - 1, Math.floor(q * a.length))]!;
  return `p50 ${at(0.5)}  p95 ${at(0.95)}  p99 ${at(0.99)}  max ${a[a.length - 1]} ms`;
};
const t0 = picked[0]!.created;
console.log(`${picked.length} finished tasks over ${((picked[picked.length - 1]!.created - t0) / 1000).toFixed(1)} s`);
console.log(`  created -> started   ${pct(picked.map((r) => r.wait))}`);
console.log(`  started -> finished  ${pct(picked.map((r) => r.run))}`);
console.log(`  created -> finished  ${pct(picked.map((r) => r.wait + r.run))}`);
const worst = [...picked].sort((x, y) => y.wait + y.run - (x.wait + x.run)).slice(0, Number(values.worst));
console.log(`  slowest (created at +s: wait + run ms): ${worst.map((r) => `+${((r.created - t0) / 1000).toFixed(2)}: ${r.wait} + ${r.run}`).join(", ")}`);
