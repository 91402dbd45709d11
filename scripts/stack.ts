// Dev/test stack: real Redis and RocketMQ 5.3.3 (name server + proxy with embedded broker) as plain
// processes, no Docker. See docs/stack.md.
//   bun scripts/stack.ts up [--llm | llm] | down | status | env | logs [namesrv|broker|proxy|redis|llm]   [--dir DIR]
import { existsSync } from "node:fs";
import { checkJava, ensureJars } from "./stack/jars";
import { llmLogFile, llmUrl, MODEL_ALIAS, statusLlm, upLlm } from "./stack/llm";
import { endpoint, portOpen, portsFromEnv, type Ports } from "./stack/ports";
import { statusRedis, upRedis } from "./stack/redis";
import { logFiles, PartFailed, statusRocketMQ, upRocketMQ } from "./stack/rocketmq";
import { StackState, stackDir, stopProcess, tail, withLock } from "./stack/state";
import { clusterMain, takeTopology } from "./stack/cluster";

const USAGE = "usage: bun scripts/stack.ts up [--llm | llm] | down | status | env | logs [namesrv|broker|proxy|redis|llm]  [--dir DIR]";
const log = (s: string) => console.log(s);

function printEndpoints(ports: Ports) {
  log(`  REDIS_URL=redis://${endpoint(ports.redis)}`);
  log(`  MQ_ENDPOINT=${endpoint(ports.grpc)}`);
  log(`  MQ_NAMESRV=${endpoint(ports.namesrv)}`);
}

async function up(st: StackState, ports: Ports, withLlm: boolean) {
  const started = Date.now();
  log(`stack up (${st.dir})`);
  await upRedis(st, ports, log);
  checkJava();
  const lib = await ensureJars(log);
  await upRocketMQ(st, ports, lib, log);
  const llm = withLlm ? await upLlm(st, log) : undefined;
  log(`stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s:`);
  printEndpoints(ports);
  if (llm) log(`  LLM_BASE_URL=${llm} LLM_MODEL=${MODEL_ALIAS}`);
  return 0;
}

async function status(st: StackState, ports: Ports) {
  const llm = await statusLlm(st);
  const parts = [await statusRedis(st, ports), ...(await statusRocketMQ(st, ports)), ...(llm ? [llm] : [])];
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
  for (const name of ["llm", "proxy", "namesrv", "redis"]) {
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

/** `eval "$(bun scripts/stack.ts env)"`: the variables api.ts/worker.ts need for this stack. */
async function env(st: StackState, ports: Ports) {
  console.log(`export REDIS_URL=redis://${endpoint(ports.redis)}`);
  console.log(`export MQ_ENDPOINT=${endpoint(ports.grpc)}`);
  console.log(`export MQ_NAMESRV=${endpoint(ports.namesrv)}`);
  const llm = await llmUrl(st);
  if (llm) console.log(`export LLM_BASE_URL=${llm}\nexport LLM_MODEL=${MODEL_ALIAS}`);
  // Left over from the cluster topology's env, it would win over REDIS_URL.
  console.log("unset REDIS_CLUSTER_NODES");
  return 0;
}

function logs(st: StackState, part: string | undefined) {
  const files: Record<string, string[]> = { ...logFiles(st), redis: [st.path("logs", "redis.out")], llm: [llmLogFile(st)] };
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

async function main(argv: string[]) {
  const args = argv.slice(2);
  // --topology cluster: Redis Cluster + two brokers, own folder and ports (scripts/stack/cluster.ts).
  if (takeTopology(args) === "cluster") return clusterMain(args);
  const dirAt = args.indexOf("--dir");
  const positional = args.filter((a, i) => (dirAt < 0 || (i !== dirAt && i !== dirAt + 1)) && a !== "--llm");
  const [cmd, part] = positional;
  const st = new StackState(stackDir(args));
  const ports = portsFromEnv();
  switch (cmd) {
    case "up":
      // `up llm`: the LLM alone, beside services that run already (tests/llm-real.test.ts).
      if (part === "llm") return withLock(st, "up", async () => (log(`llm: ${await upLlm(st, log)}`), 0));
      return withLock(st, "up", () => up(st, ports, args.includes("--llm")));
    case "down":
      return withLock(st, "down", () => down(st, ports));
    case "status":
      return status(st, ports);
    case "logs":
      return logs(st, part);
    case "env":
      return env(st, ports);
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
