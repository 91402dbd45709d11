// lib/redis.ts against private redis-servers: every command times out after REDIS_TIMEOUT_MS when
// Redis hangs (SIGSTOP), the connection is usable again after SIGCONT, and a Redis Cluster client
// whose first connect failed (the cluster was down at start) connects once the cluster is up.
import { afterAll, expect, test } from "bun:test";
import { createClient } from "redis";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis, pingRedis } from "../lib/redis.ts";
import { RedisTimeoutError, send } from "../lib/scripts.ts";
import { waitFor } from "./support/processes.ts";
import { privateRedis, type PrivateRedis } from "./support/redis-server.ts";

const servers: PrivateRedis[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

test("a hung Redis: commands fail with RedisTimeoutError after REDIS_TIMEOUT_MS; after SIGCONT the same client works", async () => {
  const pr = await privateRedis();
  servers.push(pr);
  const redis = createRedis(parseConfig({ REDIS_URL: pr.url, REDIS_TIMEOUT_MS: "300" }), silentLogger);
  expect(await connectRedis(redis)).toBe(true);
  pr.pause();
  try {
    const t0 = Date.now();
    const e = await send(redis, "k", ["GET", "k"]).catch((x) => x);
    expect(e).toBeInstanceOf(RedisTimeoutError);
    expect(Date.now() - t0).toBeLessThan(1_300);
    expect(await pingRedis(redis).catch(() => false)).toBe(false);
  } finally {
    pr.resume();
  }
  await waitFor(() => pingRedis(redis).catch(() => false), 5_000, "PONG after SIGCONT");
  await send(redis, "k", ["SET", "k", "v"]);
  expect(await send(redis, "k", ["GET", "k"])).toBe("v");
  await closeRedis(redis);
}, 30_000);

test("a cluster client started while the cluster is down connects once it is up", async () => {
  const pr = await privateRedis(["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${crypto.randomUUID()}.conf`]);
  servers.push(pr);
  await pr.stop();
  const redis = createRedis(parseConfig({ REDIS_CLUSTER_NODES: `127.0.0.1:${pr.port}`, REDIS_TIMEOUT_MS: "500" }), silentLogger);
  expect(await connectRedis(redis, 1_000)).toBe(false);
  await pr.start();
  const admin = createClient({ url: pr.url });
  admin.on("error", () => {});
  await admin.connect();
  await admin.sendCommand(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]).catch(() =>
    admin.sendCommand(["CLUSTER", "ADDSLOTS", ...Array.from({ length: 16384 }, (_, i) => String(i))]),
  );
  await waitFor(async () => String(await admin.sendCommand(["CLUSTER", "INFO"])).includes("cluster_state:ok"), 10_000, "cluster_state:ok");
  await admin.close();
  await waitFor(() => pingRedis(redis).catch(() => false), 20_000, "the cluster client to connect");
  await closeRedis(redis);
}, 60_000);
