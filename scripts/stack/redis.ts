// Redis for the stack: a server already answering on the port is used as it is and never stopped
// (developers and CI images often run one); otherwise a redis-server of our own, data under
// <stack>/redis with the append-only file on, so a restart keeps task statuses like production.
import { writeFileSync } from "node:fs";
import { endpoint, redisAnswers, redisPing, redisReady, type Ports, waitFor } from "./ports";
import { isAlive, isOurs, spawnDetached, type StackState, tail } from "./state";
import { PartFailed, type PartStatus } from "./rocketmq";
import { ensureDebianPackage } from "./apt";

export function ensureRedisServer(log: (s: string) => void) {
  let ok: boolean;
  try {
    ok = ensureDebianPackage("redis-server", "redis-server", (l) => log(`  redis:${l.slice(1)}`));
  } catch (e) {
    throw new PartFailed("redis", (e as Error).message, []);
  }
  // Debian's package starts a service on 6379 where an init system runs; that one is then simply
  // "a server already answering" if our port is 6379.
  if (!ok)
    throw new PartFailed("redis", "redis-server not found on PATH; install it (Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y redis-server; macOS: brew install redis) or run one on the configured port", []);
}

export async function upRedis(st: StackState, ports: Ports, log: (s: string) => void, timeoutMs = 30_000) {
  if (redisAnswers(await redisPing(ports.redis))) {
    const ours = st.live("redis");
    log(`  redis: ready on ${endpoint(ports.redis)}${ours ? "" : " (already running, not managed by this stack)"}`);
    return;
  }
  ensureRedisServer(log);
  const data = st.ensure("redis");
  const conf = st.path("conf", "redis.conf");
  st.ensure("conf");
  st.ensure("logs");
  writeFileSync(
    conf,
    [
      `port ${ports.redis}`,
      "bind 127.0.0.1",
      `dir ${data}`,
      "appendonly yes",
      "daemonize no",
      "",
    ].join("\n"),
  );
  // redis-server rewrites its process title ("redis-server 127.0.0.1:PORT"), so the config path
  // is not in its cmdline for long; the start time recorded with the pid pins the exact process.
  const rec = spawnDetached("redis", ["redis-server", conf], {
    cwd: data,
    out: st.path("logs", "redis.out"),
    match: "redis-server",
  });
  st.write(rec);
  log(`  redis: started pid ${rec.pid}`);
  const r = await waitFor(async () => redisReady(await redisPing(ports.redis)), timeoutMs, () =>
    isAlive(rec) ? undefined : `process ${rec.pid} exited`,
  );
  if (!r.ok) throw new PartFailed("redis", `${r.why} (port ${ports.redis})`, [`--- ${rec.out}\n${tail(rec.out, 30)}`]);
  log(`  redis: ready on ${endpoint(ports.redis)}`);
}

export async function statusRedis(st: StackState, ports: Ports): Promise<PartStatus> {
  const reply = await redisPing(ports.redis);
  const rec = st.read("redis");
  const owner = rec ? (isOurs(rec) ? `pid ${rec.pid}` : `started pid ${rec.pid} is gone`) : "not managed by this stack";
  return { name: "redis", ready: redisReady(reply), detail: `${endpoint(ports.redis)} ${reply ?? "no answer"}; ${owner}` };
}
