// The cluster topology of the dev stack (`bun scripts/stack.ts <cmd> --topology cluster`): Redis Cluster
// of 3 masters + 3 replicas, and RocketMQ with a name server, broker-a, broker-b and a cluster-mode
// proxy. Its own folder (.stack-cluster/, or --dir / STACK_CLUSTER_DIR) and its own ports
// (STACK_CLUSTER_BASE, cluster-ports.ts), so it runs beside the single-node stack. See docs/stack.md.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { allClusterPorts, type ClusterPorts, clusterPortsFromEnv } from "./cluster-ports";
import { redisPart, statusRedisCluster, upRedisCluster } from "./cluster-redis";
import { clusterMqLogFiles, statusClusterRocketMQ, upClusterRocketMQ } from "./cluster-rocketmq";
import { checkJava, ensureJars } from "./jars";
import { endpoint, portOpen } from "./ports";
import { CLUSTER } from "./rocketmq";
import { repoRoot, StackState, stopProcess, tail, withLock } from "./state";

const log = (s: string) => console.log(s);

/** `--dir DIR`, else STACK_CLUSTER_DIR, else <repo>/.stack-cluster (gitignored). */
export function clusterStackDir(args: string[], env = process.env): string {
  const i = args.indexOf("--dir");
  if (i >= 0) {
    const v = args[i + 1];
    if (!v) throw new Error("--dir needs a folder");
    return resolve(v);
  }
  return resolve(env.STACK_CLUSTER_DIR || join(repoRoot, ".stack-cluster"));
}

/** The variables that point the API, workers, provisioning and load.ts at this stack. */
export function clusterEnv(ports: ClusterPorts): Record<string, string> {
  return {
    REDIS_CLUSTER_NODES: ports.redis.map(endpoint).join(","),
    MQ_ENDPOINT: endpoint(ports.grpc),
    MQ_NAMESRV: endpoint(ports.namesrv),
    MQ_CLUSTER: CLUSTER,
  };
}

async function up(st: StackState, ports: ClusterPorts) {
  const started = Date.now();
  log(`cluster stack up (${st.dir}, ports from ${ports.base})`);
  await upRedisCluster(st, ports, log);
  checkJava();
  const lib = await ensureJars(log);
  await upClusterRocketMQ(st, ports, lib, log);
  log(`cluster stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s:`);
  for (const [k, v] of Object.entries(clusterEnv(ports))) log(`  ${k}=${v}`);
  return 0;
}

async function status(st: StackState, ports: ClusterPorts) {
  const parts = [...(await statusRedisCluster(st, ports)), ...(await statusClusterRocketMQ(st, ports))];
  for (const p of parts) log(`${p.ready ? "ready    " : "NOT READY"} ${p.name.padEnd(14)} ${p.detail}`);
  const bad = parts.filter((p) => !p.ready).map((p) => p.name);
  if (bad.length) {
    log(`not ready: ${bad.join(", ")}`);
    return 1;
  }
  return 0;
}

/**
 * Stops only what this stack started: the proxy first, then both brokers (they unregister from the
 * name server), the name server, then the Redis nodes. Parts of one step stop in parallel.
 */
async function down(st: StackState, ports: ClusterPorts) {
  let failed = false;
  const steps = [["proxy"], ports.brokers.map((b) => b.name), ["namesrv"], ports.redis.map(redisPart)];
  for (const names of steps)
    await Promise.all(
      names.map(async (name) => {
        const rec = st.read(name);
        if (!rec) return;
        try {
          const how = await stopProcess(rec);
          log(`  ${name}: ${how === "not running" ? `pid ${rec.pid} not running` : `${how} pid ${rec.pid}`}`);
          st.forget(name);
        } catch (e) {
          failed = true;
          log(`  ${name}: ${(e as Error).message}`);
        }
      }),
    );
  const open: number[] = [];
  for (const port of allClusterPorts(ports)) if (await portOpen(port, 300)) open.push(port);
  log(open.length ? `cluster stack down; still answering (not started by this stack): ${open.join(", ")}` : "cluster stack down");
  return failed ? 1 : 0;
}

function logs(st: StackState, ports: ClusterPorts, part: string | undefined) {
  const files: Record<string, string[]> = { ...clusterMqLogFiles(st) };
  for (const p of ports.redis) files[redisPart(p)] = [st.path("logs", `${redisPart(p)}.out`)];
  // "redis" alone: every node.
  const names = part === "redis" ? ports.redis.map(redisPart) : part ? [part] : Object.keys(files);
  for (const n of names) {
    const list = files[n];
    if (!list) {
      console.error(`unknown part ${JSON.stringify(n)}; one of redis, ${Object.keys(files).join(", ")}`);
      return 2;
    }
    for (const f of list) log(`--- ${n}: ${f}\n${existsSync(f) ? tail(f, 60) : "(none yet)"}`);
  }
  return 0;
}

const USAGE = "usage: bun scripts/stack.ts up | down | status | logs [part] | env  --topology cluster [--dir DIR]";

/**
 * Removes `--topology X` from args (in place) and returns X: "single" (the default) or "cluster".
 * Throws on anything else.
 */
export function takeTopology(args: string[]): "single" | "cluster" {
  const at = args.indexOf("--topology");
  if (at < 0) return "single";
  const value = args[at + 1];
  if (value !== "single" && value !== "cluster") throw new Error(`--topology is single or cluster, got ${JSON.stringify(value ?? "")}`);
  args.splice(at, 2);
  return value;
}

/** `export` lines for a shell; unsets REDIS_URL, which a single-topology env may have left. */
function env(ports: ClusterPorts) {
  for (const [k, v] of Object.entries(clusterEnv(ports))) log(`export ${k}=${v}`);
  log("unset REDIS_URL");
  return 0;
}

/** `bun scripts/stack.ts <cmd> --topology cluster [--dir DIR]` (the flag already taken from args). */
export async function clusterMain(args: string[]): Promise<number> {
  const dirAt = args.indexOf("--dir");
  const [cmd, part] = args.filter((_, i) => dirAt < 0 || (i !== dirAt && i !== dirAt + 1));
  const ports = clusterPortsFromEnv();
  const st = new StackState(clusterStackDir(args));
  switch (cmd) {
    case "up":
      return withLock(st, "up", () => up(st, ports));
    case "down":
      return withLock(st, "down", () => down(st, ports));
    case "status":
      return status(st, ports);
    case "logs":
      return logs(st, ports, part);
    case "env":
      return env(ports);
    default:
      console.error(USAGE);
      return 2;
  }
}
