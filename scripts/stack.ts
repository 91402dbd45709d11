// Dev/test stack: real Redis and RocketMQ 5.3.3 (name server + proxy with embedded broker) as plain
// processes, no Docker. See docs/stack.md.
//   bun scripts/stack.ts up | down | status | logs [namesrv|broker|proxy|redis]   [--dir DIR]
//   bun scripts/stack.ts env                     export lines pointing the services at the stack
//   ... --topology cluster                       Redis Cluster + two brokers (scripts/stack/cluster.ts)
import { existsSync } from "node:fs";
import { clusterCommand, clusterEnv } from "./stack/cluster";
import { clusterPortsFromEnv } from "./stack/cluster-ports";
import { checkJava, ensureJars } from "./stack/jars";
import { endpoint, portOpen, portsFromEnv, type Ports } from "./stack/ports";
import { statusRedis, upRedis } from "./stack/redis";
import { logFiles, PartFailed, statusRocketMQ, upRocketMQ } from "./stack/rocketmq";
import { StackState, stackDir, stopProcess, tail, withLock } from "./stack/state";

const USAGE =
  "usage: bun scripts/stack.ts up | down | status | logs [part] | env  [--dir DIR] [--topology single|cluster]";
const log = (s: string) => console.log(s);

function printEndpoints(ports: Ports) {
  log(`  REDIS_URL=redis://${endpoint(ports.redis)}`);
  log(`  MQ_ENDPOINT=${endpoint(ports.grpc)}`);
  log(`  MQ_NAMESRV=${endpoint(ports.namesrv)}`);
}

async function up(st: StackState, ports: Ports) {
  const started = Date.now();
  log(`stack up (${st.dir})`);
  await upRedis(st, ports, log);
  checkJava();
  const lib = await ensureJars(log);
  await upRocketMQ(st, ports, lib, log);
  log(`stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s:`);
  printEndpoints(ports);
  return 0;
}

async function status(st: StackState, ports: Ports) {
  const parts = [await statusRedis(st, ports), ...(await statusRocketMQ(st, ports))];
  for (const p of parts) log(`${p.ready ? "ready    " : "NOT READY"} ${p.name.padEnd(8)} ${p.detail}`);
  const bad = parts.filter((p) => !p.ready).map((p) => p.name);
  if (bad.length) {
    log(`not ready: ${bad.join(", ")}`);
    return 1;
  }
  return 0;
}

/** Stops only what this stack started, proxy (with the broker) first so it leaves the name server cleanly. */
async function down(st: StackState, ports: Ports) {
  let failed = false;
  for (const name of ["proxy", "namesrv", "redis"]) {
    const rec = st.read(name);
    if (!rec) continue;
    try {
      const how = await stopProcess(rec);
      log(`  ${name}: ${how === "not running" ? `pid ${rec.pid} not running` : `${how} pid ${rec.pid}`}`);
      st.forget(name);
    } catch (e) {
      failed = true;
      log(`  ${name}: ${(e as Error).message}`);
    }
  }
  // Closed ports confirm it; one still open belongs to a server this stack did not start.
  const open: string[] = [];
  for (const [name, port] of Object.entries(ports)) if (await portOpen(port, 300)) open.push(`${name} ${port}`);
  log(open.length ? `stack down; still answering (not started by this stack): ${open.join(", ")}` : "stack down");
  return failed ? 1 : 0;
}

function logs(st: StackState, part: string | undefined) {
  const files: Record<string, string[]> = { ...logFiles(st), redis: [st.path("logs", "redis.out")] };
  const names = part ? [part] : Object.keys(files);
  for (const n of names) {
    const list = files[n];
    if (!list) {
      console.error(`unknown part ${JSON.stringify(n)}; one of ${Object.keys(files).join(", ")}`);
      return 2;
    }
    for (const f of list) log(`--- ${n}: ${f}\n${existsSync(f) ? tail(f, 60) : "(none yet)"}`);
  }
  return 0;
}

/** `export` lines for a shell (`eval "$(bun scripts/stack.ts env)"`); unsets what would point elsewhere. */
function env(topology: string) {
  const cluster = topology === "cluster";
  const p = portsFromEnv();
  const vars = cluster
    ? clusterEnv(clusterPortsFromEnv())
    : { REDIS_URL: `redis://${endpoint(p.redis)}`, MQ_ENDPOINT: endpoint(p.grpc), MQ_NAMESRV: endpoint(p.namesrv) };
  for (const [k, v] of Object.entries(vars)) log(`export ${k}=${v}`);
  log(cluster ? "unset REDIS_URL" : "unset REDIS_CLUSTER_NODES");
  return 0;
}

async function main(argv: string[]) {
  const args = argv.slice(2);
  const flags = new Set<number>();
  for (const f of ["--dir", "--topology"]) {
    const at = args.indexOf(f);
    if (at >= 0) flags.add(at).add(at + 1);
  }
  const positional = args.filter((_, i) => !flags.has(i));
  const [cmd, part] = positional;
  const topoAt = args.indexOf("--topology");
  const topology = topoAt >= 0 ? args[topoAt + 1] : "single";
  if (topology !== "single" && topology !== "cluster") {
    console.error(`--topology is single or cluster, got ${JSON.stringify(topology)}`);
    return 2;
  }
  if (cmd === "env") return env(topology);
  if (topology === "cluster") {
    const code = await clusterCommand(cmd, part, args);
    if (code < 0) console.error(USAGE);
    return code < 0 ? 2 : code;
  }
  const st = new StackState(stackDir(args));
  const ports = portsFromEnv();
  switch (cmd) {
    case "up":
      return withLock(st, "up", () => up(st, ports));
    case "down":
      return withLock(st, "down", () => down(st, ports));
    case "status":
      return status(st, ports);
    case "logs":
      return logs(st, part);
    default:
      console.error(USAGE);
      return 2;
  }
}

main(process.argv).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof PartFailed) {
      console.error(`stack: ${e.message}`);
      for (const l of e.logs) console.error(l);
    } else console.error(`stack: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
