// Redis Cluster for the cluster topology: six redis-server processes in cluster mode (3 masters, 3
// replicas), joined once with `redis-cli --cluster create ... --cluster-replicas 1`. Each node keeps
// its data and nodes.conf under <stack>/redis-<port>, so a node started again (after a crash or
// `down`) rejoins the cluster by itself: a master that was failed over comes back as a replica.
import { writeFileSync } from "node:fs";
import { BUS_OFFSET, type ClusterPorts } from "./cluster-ports";
import { endpoint, portBindable, redisAnswers, redisPing, redisReady, waitFor } from "./ports";
import { ensureRedisServer } from "./redis";
import { PartFailed, type PartStatus } from "./rocketmq";
import { isAlive, isOurs, spawnDetached, type StackState, tail } from "./state";

/**
 * How long a master may not answer before the others mark it failed and its replica takes over.
 * Redis' default is 15 s; 5 s makes a failover take ~6-8 s, still far above the pauses a busy 2-core
 * box gives a node (a shorter one failed nodes over that were only slow).
 */
export const NODE_TIMEOUT_MS = 5_000;

export const redisPart = (port: number) => `redis-${port}`;

/** `redis-cli -p PORT args...`: its stdout, or undefined when it failed or took over 5 s. */
export function cli(port: number, ...args: string[]): string | undefined {
  const r = Bun.spawnSync(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: 5_000,
  });
  return r.exitCode === 0 ? r.stdout.toString() : undefined;
}

/** `CLUSTER INFO` as a map (cluster_state, cluster_slots_ok, cluster_known_nodes, ...). */
export function clusterInfo(port: number): Record<string, string> | undefined {
  const text = cli(port, "cluster", "info");
  if (!text || !text.includes("cluster_state:")) return undefined;
  return Object.fromEntries(
    text
      .split("\n")
      .map((l) => l.trim().split(":"))
      .filter((kv) => kv.length === 2) as [string, string][],
  );
}

export type ClusterNode = { id: string; port: number; role: "master" | "replica"; masterId?: string; failed: boolean; slots: string };

/** `CLUSTER NODES` as seen from one node. */
export function clusterNodes(port: number): ClusterNode[] | undefined {
  const text = cli(port, "cluster", "nodes");
  if (!text) return undefined;
  const out: ClusterNode[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(" ");
    if (f.length < 8) continue;
    const addr = f[1]!.split("@")[0]!;
    const flags = f[2]!.split(",");
    out.push({
      id: f[0]!,
      port: Number(addr.slice(addr.lastIndexOf(":") + 1)),
      role: flags.includes("master") ? "master" : "replica",
      masterId: f[3] === "-" ? undefined : f[3],
      failed: flags.includes("fail") || flags.includes("fail?"),
      slots: f.slice(8).join(" "),
    });
  }
  return out;
}

/**
 * Ready: every node answers, sees the cluster ok with all 16384 slots and every node known, and
 * there are 3 masters each with a replica that is not failed. A node that is down makes it not ready.
 */
export function clusterHealth(ports: ClusterPorts): { ready: boolean; detail: string; nodes?: ClusterNode[] } {
  const problems: string[] = [];
  for (const p of ports.redis) {
    const info = clusterInfo(p);
    if (!info) problems.push(`${p} does not answer CLUSTER INFO`);
    else if (info.cluster_state !== "ok" || info.cluster_slots_ok !== "16384" || info.cluster_known_nodes !== String(ports.redis.length))
      problems.push(`${p}: state ${info.cluster_state}, slots ok ${info.cluster_slots_ok}, known nodes ${info.cluster_known_nodes}`);
  }
  const view = ports.redis.map(clusterNodes).find((n) => n && n.length);
  if (view) {
    const masters = view.filter((n) => n.role === "master" && n.slots && !n.failed);
    const paired = masters.filter((m) => view.some((r) => r.role === "replica" && r.masterId === m.id && !r.failed));
    if (masters.length !== ports.redis.length / 2 || paired.length !== masters.length)
      problems.push(`${masters.length} masters with slots, ${paired.length} of them with a live replica`);
  }
  return { ready: problems.length === 0, detail: problems.join("; "), nodes: view };
}

function writeNodeConf(st: StackState, port: number): string {
  const dir = st.ensure(redisPart(port));
  const conf = st.path("conf", `${redisPart(port)}.conf`);
  st.ensure("conf");
  writeFileSync(
    conf,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      "daemonize no",
      "appendonly yes",
      "cluster-enabled yes",
      "cluster-config-file nodes.conf",
      `cluster-node-timeout ${NODE_TIMEOUT_MS}`,
      // While one shard fails over, the other two keep serving their slots (the default "yes" stops
      // the whole cluster until every slot is covered again).
      "cluster-require-full-coverage no",
      "",
    ].join("\n"),
  );
  return conf;
}

export async function upRedisCluster(st: StackState, ports: ClusterPorts, log: (s: string) => void, timeoutMs = 60_000) {
  ensureRedisServer(log);
  // redis-cli comes with redis-server (Debian: redis-tools, a dependency of redis-server).
  if (!Bun.which("redis-cli")) throw new PartFailed("redis", "redis-cli not found on PATH (Debian: apt-get install -y redis-tools)", []);
  st.ensure("logs");
  const started: { port: number; rec: ReturnType<typeof spawnDetached> }[] = [];
  for (const port of ports.redis) {
    if (redisAnswers(await redisPing(port))) continue;
    for (const p of [port, port + BUS_OFFSET])
      if (!(await portBindable(p))) throw new PartFailed("redis", `port ${p} cannot be bound (held by another socket); choose another STACK_CLUSTER_BASE`, []);
    const conf = writeNodeConf(st, port);
    const rec = spawnDetached(redisPart(port), ["redis-server", conf], {
      cwd: st.path(redisPart(port)),
      out: st.path("logs", `${redisPart(port)}.out`),
      match: "redis-server",
    });
    st.write(rec);
    started.push({ port, rec });
  }
  if (started.length) log(`  redis: started ${started.map((s) => `${s.port} (pid ${s.rec.pid})`).join(", ")}`);
  for (const { port, rec } of started) {
    const r = await waitFor(async () => redisReady(await redisPing(port)), timeoutMs, () => (isAlive(rec) ? undefined : `process ${rec.pid} exited`));
    if (!r.ok) throw new PartFailed("redis", `${r.why} (port ${port})`, [`--- ${rec.out}\n${tail(rec.out, 30)}`]);
  }

  // A fresh set of nodes has no slots anywhere: join them. Nodes with a nodes.conf find each other again.
  const assigned = ports.redis.some((p) => Number(clusterInfo(p)?.cluster_slots_assigned ?? 0) > 0);
  if (!assigned) {
    const nodes = ports.redis.map(endpoint);
    log(`  redis: redis-cli --cluster create ${nodes.join(" ")} --cluster-replicas 1`);
    const r = Bun.spawnSync(["redis-cli", "--cluster", "create", ...nodes, "--cluster-replicas", "1", "--cluster-yes"], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: timeoutMs,
    });
    if (r.exitCode !== 0)
      throw new PartFailed("redis", `redis-cli --cluster create failed (exit ${r.exitCode})`, [(r.stdout.toString() + r.stderr.toString()).trim().split("\n").slice(-20).join("\n")]);
  }
  const r = await waitFor(async () => clusterHealth(ports).ready, timeoutMs);
  if (!r.ok) throw new PartFailed("redis", `cluster not ready: ${clusterHealth(ports).detail} (${r.why})`, []);
  log(`  redis: cluster ready, ${describeNodes(clusterHealth(ports).nodes ?? [])}`);
}

/** "masters 7000 7001 7002, replicas 7003>7001 ..." */
export function describeNodes(nodes: ClusterNode[]): string {
  const byId = new Map(nodes.map((n) => [n.id, n.port]));
  const masters = nodes.filter((n) => n.role === "master").map((n) => n.port).sort();
  const replicas = nodes.filter((n) => n.role === "replica").sort((a, b) => a.port - b.port).map((n) => `${n.port}>${byId.get(n.masterId ?? "") ?? "?"}`);
  return `masters ${masters.join(" ")}; replicas (replica>master) ${replicas.join(" ")}`;
}

export async function statusRedisCluster(st: StackState, ports: ClusterPorts): Promise<PartStatus[]> {
  const nodes = clusterHealth(ports);
  const parts: PartStatus[] = [];
  for (const port of ports.redis) {
    const reply = await redisPing(port);
    const rec = st.read(redisPart(port));
    const owner = rec ? (isOurs(rec) ? `pid ${rec.pid}` : `started pid ${rec.pid} is gone`) : "not managed by this stack";
    const me = nodes.nodes?.find((n) => n.port === port);
    parts.push({
      name: redisPart(port),
      ready: redisReady(reply),
      detail: `${endpoint(port)} ${reply ?? "no answer"}${me ? `, ${me.role}${me.failed ? " (failed)" : ""}` : ""}; ${owner}`,
    });
  }
  parts.push({ name: "redis-cluster", ready: nodes.ready, detail: nodes.ready ? describeNodes(nodes.nodes ?? []) : nodes.detail });
  return parts;
}
