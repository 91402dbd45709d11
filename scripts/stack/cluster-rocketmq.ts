// RocketMQ 5.3.3 for the cluster topology: one name server, two plain brokers (BrokerStartup JVMs,
// broker-a and broker-b, both masters of DefaultCluster) and one proxy in cluster mode
// (`ProxyStartup -pm cluster`) in front of both. Clients speak gRPC to the proxy only; the proxy
// reads routes from the name server and talks remoting to whichever broker holds a queue, and the
// routes it hands clients name itself for every broker. So one MQ_ENDPOINT reaches both brokers.
//
// Why not a local-mode proxy per broker (as the single-node stack runs): a local-mode proxy writes
// every message to the broker inside its own JVM, and advertises each broker as <brokerIP1>:<its own
// gRPC port>. Two such proxies on one host need two gRPC ports, so each would advertise the other
// broker at its own port, and sends meant for broker-b would land in broker-a. That only works with
// one host (or IP) per broker and the same port everywhere, as in production on separate machines.
//
// Folders under the stack folder: conf/ (namesrv.properties, broker-a.conf, broker-b.conf,
// proxy.json), namesrv/, broker-a/, broker-b/, proxy/ (each JVM's user.home: logs/rocketmqlogs/,
// and for brokers store/), logs/<part>.out.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Admin } from "../../lib/rocketmq/admin.ts";
import type { ClusterPorts } from "./cluster-ports";
import { endpoint, portBindable, portOpen, waitFor } from "./ports";
import { CLUSTER, javaCmd, NAMESRV_HEAP, PartFailed, type PartStatus } from "./rocketmq";
import { isAlive, isOurs, type ProcRecord, spawnDetached, type StackState, tail } from "./state";

// Two brokers and a proxy on a 2-core box: smaller heaps than the single stack's proxy+broker (1 GiB),
// RSS grows only as they are used (no AlwaysPreTouch).
const BROKER_HEAP = ["-Xms256m", "-Xmx768m", "-XX:MaxDirectMemorySize=768m"];
const PROXY_HEAP = ["-Xms256m", "-Xmx512m", "-XX:MaxDirectMemorySize=512m"];

export type MqPart = "namesrv" | "broker-a" | "broker-b" | "proxy";

export function clusterMqLogFiles(st: StackState): Record<MqPart, string[]> {
  const rmq = (home: string, file: string) => st.path(home, "logs", "rocketmqlogs", file);
  return {
    namesrv: [st.path("logs", "namesrv.out"), rmq("namesrv", "namesrv.log")],
    "broker-a": [st.path("logs", "broker-a.out"), rmq("broker-a", "broker.log")],
    "broker-b": [st.path("logs", "broker-b.out"), rmq("broker-b", "broker.log")],
    proxy: [st.path("logs", "proxy.out"), rmq("proxy", "proxy.log")],
  };
}

function failure(st: StackState, part: MqPart, why: string) {
  return new PartFailed(part, why, clusterMqLogFiles(st)[part].filter(existsSync).map((f) => `--- ${f}\n${tail(f, 30)}`));
}

async function ensureBindable(st: StackState, part: MqPart, ports: number[]) {
  const bad: number[] = [];
  for (const p of ports) if (!(await portBindable(p))) bad.push(p);
  if (bad.length) throw failure(st, part, `port ${bad.join(", ")} cannot be bound (held by another socket); choose another STACK_CLUSTER_BASE`);
}

function writeConfigs(st: StackState, ports: ClusterPorts) {
  const conf = st.ensure("conf");
  const ns = endpoint(ports.namesrv);
  writeFileSync(join(conf, "namesrv.properties"), `listenPort=${ports.namesrv}\n`);
  for (const b of ports.brokers) {
    const store = st.ensure(b.name, "store");
    writeFileSync(
      join(conf, `${b.name}.conf`),
      [
        `brokerClusterName=${CLUSTER}`,
        `brokerName=${b.name}`,
        "brokerId=0",
        "brokerRole=ASYNC_MASTER",
        "flushDiskType=ASYNC_FLUSH",
        `namesrvAddr=${ns}`,
        "brokerIP1=127.0.0.1",
        // Topics and groups are created on both brokers by provisioning, never by a typo.
        "autoCreateTopicEnable=false",
        `listenPort=${b.port}`,
        `storePathRootDir=${store}`,
        `storePathCommitLog=${join(store, "commitlog")}`,
        "mappedFileSizeCommitLog=67108864",
        "diskMaxUsedSpaceRatio=95",
        "",
      ].join("\n"),
    );
  }
  writeFileSync(
    join(conf, "proxy.json"),
    JSON.stringify({
      rocketMQClusterName: CLUSTER,
      proxyMode: "cluster",
      namesrvAddr: ns,
      grpcServerPort: ports.grpc,
      remotingListenPort: ports.proxyRemoting,
      // The proxy, not the client, picks the queue a message goes to (the client's choice of queue
      // is ignored for normal messages), round-robin over both brokers' queues. With a broker down,
      // this makes the proxy skip the broker a send just failed on, and probe it until it answers
      // again, instead of failing every send whose turn falls on it until the route is refreshed.
      sendLatencyEnable: true,
      startDetectorEnable: true,
      // Routes are re-read from the name server this often (default 20 s): how long a broker that
      // died keeps being offered to consumers' receives.
      topicRouteServiceCacheRefreshSeconds: 5,
    }) + "\n",
  );
  return conf;
}

function died(rec: ProcRecord) {
  return () => (isAlive(rec) ? undefined : `process ${rec.pid} exited`);
}

/** The brokers of our cluster registered at the name server with a master at the expected port. */
export async function registeredBrokers(ports: ClusterPorts): Promise<string[]> {
  const admin = new Admin({ namesrv: endpoint(ports.namesrv), cluster: CLUSTER, timeoutMs: 3000 });
  try {
    const brokers = await admin.brokers();
    return ports.brokers.filter((want) => brokers.some((b) => b.name === want.name && b.master.endsWith(`:${want.port}`))).map((b) => b.name);
  } catch {
    return [];
  } finally {
    admin.close();
  }
}

/**
 * Starts the parts that do not answer yet: the name server, then both brokers at once, then (once
 * both are registered) the proxy; ready when the proxy's gRPC port accepts. A part already answering
 * is left alone, so `up` after a crash restarts only what is gone.
 */
export async function upClusterRocketMQ(st: StackState, ports: ClusterPorts, lib: string, log: (s: string) => void, timeoutMs = 180_000) {
  st.ensure("logs");
  const conf = writeConfigs(st, ports);
  const ns = endpoint(ports.namesrv);

  if (!(await portOpen(ports.namesrv))) {
    await ensureBindable(st, "namesrv", [ports.namesrv]);
    const home = st.ensure("namesrv");
    const rec = spawnDetached(
      "namesrv",
      javaCmd(st, lib, home, NAMESRV_HEAP, "rmq.namesrv.logback.xml", ["org.apache.rocketmq.namesrv.NamesrvStartup", "-c", join(conf, "namesrv.properties")]),
      { cwd: home, out: st.path("logs", "namesrv.out"), match: `-Duser.home=${home} ` },
    );
    st.write(rec);
    log(`  namesrv: started pid ${rec.pid}`);
    const r = await waitFor(() => portOpen(ports.namesrv), timeoutMs, died(rec));
    if (!r.ok) throw failure(st, "namesrv", `${r.why} (port ${ports.namesrv})`);
  }
  log(`  namesrv: ready on ${ns}`);

  const starting: { name: MqPart; port: number; rec: ProcRecord }[] = [];
  for (const b of ports.brokers) {
    if (await portOpen(b.port)) continue;
    const part = b.name as MqPart;
    await ensureBindable(st, part, [b.port - 2, b.port, b.port + 1]);
    const home = st.ensure(b.name);
    const rec = spawnDetached(
      b.name,
      javaCmd(st, lib, home, BROKER_HEAP, "rmq.broker.logback.xml", ["org.apache.rocketmq.broker.BrokerStartup", "-c", join(conf, `${b.name}.conf`), "-n", ns]),
      { cwd: home, out: st.path("logs", `${b.name}.out`), match: `-Duser.home=${home} ` },
    );
    st.write(rec);
    log(`  ${b.name}: started pid ${rec.pid}`);
    starting.push({ name: part, port: b.port, rec });
  }

  // The brokers start in parallel; wait for each port, naming the first one that dies or stays closed.
  await Promise.all(
    starting.map(async (s) => {
      const r = await waitFor(() => portOpen(s.port), timeoutMs, died(s.rec));
      if (!r.ok) throw failure(st, s.name, `${r.why} (port ${s.port})`);
    }),
  );
  const all = ports.brokers.map((b) => b.name);
  const reg = await waitFor(async () => (await registeredBrokers(ports)).length === all.length, 60_000);
  if (!reg.ok) {
    const have = await registeredBrokers(ports);
    const missing = all.find((n) => !have.includes(n)) as MqPart;
    throw failure(st, missing, `not registered in cluster ${CLUSTER} at ${ns}: ${reg.why}`);
  }
  // A cluster-mode proxy creates its system topic (DefaultHeartBeatSyncerTopic) on the cluster's
  // brokers as it starts, and exits when that fails: with no broker registered yet, and (seen on a box
  // at load 40) when a broker answers too slowly. So it starts last, after the topic was created here
  // (what the proxy would create: 1 queue, perm 6; the proxy then finds it and skips the step), and
  // is started again if it still dies before opening its gRPC port.
  await ensureProxyTopic(ports);
  for (let attempt = 1; !(await portOpen(ports.grpc)); attempt++) {
    await ensureBindable(st, "proxy", [ports.grpc, ports.proxyRemoting]);
    const home = st.ensure("proxy");
    const rec = spawnDetached(
      "proxy",
      javaCmd(st, lib, home, PROXY_HEAP, "rmq.proxy.logback.xml", ["org.apache.rocketmq.proxy.ProxyStartup", "-pm", "cluster", "-pc", join(conf, "proxy.json"), "-n", ns]),
      { cwd: home, out: st.path("logs", "proxy.out"), match: `-Duser.home=${home} ` },
    );
    st.write(rec);
    log(`  proxy: started pid ${rec.pid} (cluster mode)`);
    const r = await waitFor(() => portOpen(ports.grpc), timeoutMs, died(rec));
    if (r.ok) break;
    if (attempt === 3 || isAlive(rec)) throw failure(st, "proxy", `${r.why} (gRPC port ${ports.grpc})`);
    log(`  proxy: pid ${rec.pid} exited while starting; starting it again`);
  }

  for (const b of ports.brokers) log(`  ${b.name}: ready on ${endpoint(b.port)} (registered in ${CLUSTER})`);
  log(`  proxy: ready, gRPC ${endpoint(ports.grpc)}, remoting ${endpoint(ports.proxyRemoting)}`);
}

/** The proxy's heartbeat-sync topic (ProxyConfig.heartbeatSyncerTopicName's default) on every broker. */
const PROXY_SYSTEM_TOPIC = "DefaultHeartBeatSyncerTopic";

async function ensureProxyTopic(ports: ClusterPorts) {
  const admin = new Admin({ namesrv: endpoint(ports.namesrv), cluster: CLUSTER, timeoutMs: 10_000 });
  try {
    const brokers = await admin.brokers();
    for (const b of brokers)
      if (!(await admin.getTopicConfig(b.master, PROXY_SYSTEM_TOPIC))) await admin.createTopicOn(b.master, { topic: PROXY_SYSTEM_TOPIC, queues: 1, perm: 6 });
    await admin.waitForRoute(PROXY_SYSTEM_TOPIC, brokers.map((b) => b.name), 1, 60_000);
  } finally {
    admin.close();
  }
}

export async function statusClusterRocketMQ(st: StackState, ports: ClusterPorts): Promise<PartStatus[]> {
  const owner = (name: string) => {
    const rec = st.read(name);
    return rec && isOurs(rec) ? `pid ${rec.pid}` : rec ? `started pid ${rec.pid} is gone` : "not started by this stack";
  };
  const nsOpen = await portOpen(ports.namesrv);
  const reg = nsOpen ? await registeredBrokers(ports) : [];
  const out: PartStatus[] = [{ name: "namesrv", ready: nsOpen, detail: `${endpoint(ports.namesrv)} ${nsOpen ? "open" : "closed"}; ${owner("namesrv")}` }];
  for (const b of ports.brokers) {
    const open = await portOpen(b.port);
    const registered = reg.includes(b.name);
    out.push({
      name: b.name,
      ready: open && registered,
      detail: `${endpoint(b.port)} ${open ? "open" : "closed"}${nsOpen && !registered ? ", not registered" : ""}; ${owner(b.name)}`,
    });
  }
  const grpc = await portOpen(ports.grpc);
  const rem = await portOpen(ports.proxyRemoting);
  out.push({
    name: "proxy",
    ready: grpc && rem,
    detail: `gRPC ${endpoint(ports.grpc)} ${grpc ? "open" : "closed"}, remoting ${endpoint(ports.proxyRemoting)} ${rem ? "open" : "closed"}; ${owner("proxy")}`,
  });
  return out;
}
