// One-shot: move Redis data of the previous key layout (no hash tags, global outbox/stalled sets)
// to the current one (README "Redis layout"). Stop the API and the workers first, then:
//   bun scripts/migrate-keys.ts
// It reads the same environment as the services (REDIS_URL / REDIS_CLUSTER_NODES, REDIS_PREFIX,
// REDIS_BUCKETS) and is safe to run twice.
import { loadConfig } from "../lib/config.ts";
import { keys } from "../lib/keys.ts";
import { createLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { migrateKeys } from "../lib/state/migrate.ts";

async function main() {
  const cfg = loadConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, format: cfg.LOG_FORMAT }, { service: "migrate-keys" });
  const redis = createRedis({ ...cfg, REDIS_TIMEOUT_MS: Math.max(cfg.REDIS_TIMEOUT_MS, 30_000) }, log);
  if (!(await connectRedis(redis))) throw new Error("Redis is not reachable");
  try {
    const report = await migrateKeys(redis, cfg.REDIS_PREFIX, keys(cfg.REDIS_PREFIX, cfg.REDIS_BUCKETS));
    log.info("migration done", { ...report });
  } finally {
    await closeRedis(redis);
  }
}

main().catch((e) => {
  console.error("migration failed:", e);
  process.exit(1);
});
