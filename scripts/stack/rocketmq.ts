// RocketMQ 5.3.3 as two plain JVMs: the name server, and the proxy in "local" mode, which embeds the
// broker in its own JVM (what `mqbroker --enable-proxy` does in the official image).
// Everything lives under the stack folder:
//   conf/                     generated namesrv.properties, broker.conf, proxy.json
//   rocketmq-home/            -Drocketmq.home.dir (RocketMQ only needs it to exist)
//   namesrv/                  the name server's user.home: logs/rocketmqlogs/namesrv.log, namesrv/kvConfig.json
//   broker/                   the proxy+broker's user.home: logs/rocketmqlogs/{broker,proxy}.log; store/
//   logs/<name>.out           stdout and stderr of each process
import { existsSync, writeFileSync } from "node:fs";
import { brokerSecurityLines, proxySecurityFields } from "./auth";
import { join } from "node:path";
import { endpoint, portBindable, portOpen, type Ports, waitFor } from "./ports";
import { isAlive, isOurs, type ProcRecord, spawnDetached, type StackState, tail } from "./state";
import { Admin } from "../../lib/rocketmq/admin.ts";

// Heaps sized for a 2-core CI box (the official scripts ask for 4-8 GiB). No AlwaysPreTouch, so
// RSS grows only as the heap is used.
export const NAMESRV_HEAP = ["-Xms256m", "-Xmx256m"];
const PROXY_HEAP = ["-Xms1g", "-Xmx1g", "-XX:MaxDirectMemorySize=1g"];
// Java 17 closes these packages; RocketMQ's netty/mmap code needs them.
const JAVA17 = ["--add-exports", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens", "java.base/java.nio=ALL-UNNAMED"];

export const CLUSTER = "DefaultCluster";

function writeConfigs(st: StackState, ports: Ports) {
  const conf = st.ensure("conf");
  const store = st.ensure("broker", "store");
  const ns = endpoint(ports.namesrv);
  writeFileSync(join(conf, "namesrv.properties"), `listenPort=${ports.namesrv}\n`);
  writeFileSync(
    join(conf, "broker.conf"),
    [
      `brokerClusterName=${CLUSTER}`,
      "brokerName=broker-a",
      "brokerId=0",
      "brokerRole=ASYNC_MASTER",
      "flushDiskType=ASYNC_FLUSH",
      `namesrvAddr=${ns}`,
      "brokerIP1=127.0.0.1",
      // Topics are created by provisioning (scripts/provision.ts, tests/helpers.ts), never by a typo.
      "autoCreateTopicEnable=false",
      // The broker also binds listenPort-2 (fast channel) and listenPort+1 (HA).
      `listenPort=${ports.broker}`,
      `storePathRootDir=${store}`,
      `storePathCommitLog=${join(store, "commitlog")}`,
      // 64 MiB commit log files instead of 1 GiB: a dev stack should not reserve a gigabyte of disk.
      "mappedFileSizeCommitLog=67108864",
      // The broker refuses writes above 90% disk use whatever this says; 95 only delays cleanup.
      "diskMaxUsedSpaceRatio=95",
      ...brokerSecurityLines(),
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(conf, "proxy.json"),
    JSON.stringify({
      rocketMQClusterName: CLUSTER,
      proxyMode: "local",
      namesrvAddr: ns,
      grpcServerPort: ports.grpc,
      remotingListenPort: ports.proxyRemoting,
      ...proxySecurityFields(),
    }) + "\n",
  );
  return conf;
}

export function javaCmd(st: StackState, lib: string, userHome: string, heap: string[], logback: string, main: string[]) {
  st.ensure("rocketmq-home");
  return [
    "java",
    ...heap,
    `-Drocketmq.home.dir=${st.path("rocketmq-home")}`,
    `-Duser.home=${userHome}`,
    ...JAVA17,
    // Both logback configs ship in the jars; with one shared classpath each JVM must name its own.
    `-Drmq.logback.configurationFile=${logback}`,
    "-cp",
    `${lib}/*`,
    ...main,
  ];
}

export type PartStatus = { name: string; ready: boolean; detail: string };

/** Why a starting JVM cannot become ready any more (it exited), else undefined. */
function diedWhy(rec: ProcRecord) {
  return () => (isAlive(rec) ? undefined : `process ${rec.pid} exited`);
}

export class PartFailed extends Error {
  constructor(readonly part: string, why: string, readonly logs: string[]) {
    super(`${part} failed: ${why}`);
  }
}

export function logFiles(st: StackState) {
  return {
    namesrv: [st.path("logs", "namesrv.out"), st.path("namesrv", "logs", "rocketmqlogs", "namesrv.log")],
    broker: [st.path("logs", "proxy.out"), st.path("broker", "logs", "rocketmqlogs", "broker.log")],
    proxy: [st.path("logs", "proxy.out"), st.path("broker", "logs", "rocketmqlogs", "proxy.log")],
  };
}

function failure(part: "namesrv" | "broker" | "proxy", st: StackState, why: string) {
  return new PartFailed(part, why, logFiles(st)[part].filter(existsSync).map((f) => `--- ${f}\n${tail(f, 30)}`));
}

/**
 * Fails before starting a JVM that could only die on a bind error, and says which port is held: by
 * another server, or by a socket nothing answers on (an outgoing connection's local port).
 */
async function ensureBindable(part: "namesrv" | "broker", st: StackState, ports: number[]) {
  const bad: number[] = [];
  for (const p of ports) if (!(await portBindable(p))) bad.push(p);
  if (bad.length)
    throw failure(part, st, `port ${bad.join(", ")} cannot be bound (held by another socket, perhaps an outgoing connection's local port); choose other ports`);
}

/**
 * Starts what is missing and waits until each part answers. A part that already answers on its
 * port, started by us or not, is left alone: that is what makes `up` idempotent.
 */
export async function upRocketMQ(st: StackState, ports: Ports, lib: string, log: (s: string) => void, timeoutMs = 120_000) {
  st.ensure("logs");
  writeConfigs(st, ports);
  const conf = st.path("conf");

  // Name server.
  if (!(await portOpen(ports.namesrv))) {
    await ensureBindable("namesrv", st, [ports.namesrv]);
    const home = st.ensure("namesrv");
    const rec = spawnDetached(
      "namesrv",
      javaCmd(st, lib, home, NAMESRV_HEAP, "rmq.namesrv.logback.xml", [
        "org.apache.rocketmq.namesrv.NamesrvStartup",
        "-c",
        join(conf, "namesrv.properties"),
      ]),
      { cwd: home, out: st.path("logs", "namesrv.out"), match: `-Duser.home=${home} ` },
    );
    st.write(rec);
    log(`  namesrv: started pid ${rec.pid}`);
    const r = await waitFor(() => portOpen(ports.namesrv), timeoutMs, diedWhy(rec));
    if (!r.ok) throw failure("namesrv", st, `${r.why} (port ${ports.namesrv})`);
  }
  log(`  namesrv: ready on ${endpoint(ports.namesrv)}`);

  // Proxy with the embedded broker: ready when the broker port and the gRPC port accept and the
  // broker is registered with the name server (that comes ~10 s after gRPC opens, measured).
  const brokerUp = await portOpen(ports.broker);
  const grpcUp = await portOpen(ports.grpc);
  if (!brokerUp && !grpcUp) {
    const { broker, grpc, proxyRemoting } = ports;
    await ensureBindable("broker", st, [broker - 2, broker, broker + 1, grpc, proxyRemoting]);
    const home = st.ensure("broker");
    const rec = spawnDetached(
      "proxy",
      javaCmd(st, lib, home, PROXY_HEAP, "rmq.proxy.logback.xml", [
        "org.apache.rocketmq.proxy.ProxyStartup",
        "-pm",
        "local",
        "-pc",
        join(conf, "proxy.json"),
        "-bc",
        join(conf, "broker.conf"),
        "-n",
        endpoint(ports.namesrv),
      ]),
      { cwd: home, out: st.path("logs", "proxy.out"), match: `-Duser.home=${home} ` },
    );
    st.write(rec);
    log(`  broker+proxy: started pid ${rec.pid}`);
    const b = await waitFor(() => portOpen(ports.broker), timeoutMs, diedWhy(rec));
    if (!b.ok) throw failure("broker", st, `${b.why} (port ${ports.broker})`);
    const p = await waitFor(() => portOpen(ports.grpc), timeoutMs, diedWhy(rec));
    if (!p.ok) throw failure("proxy", st, `${p.why} (gRPC port ${ports.grpc})`);
  } else if (!brokerUp || !grpcUp) {
    // Half a stack on these ports belongs to someone else (or is shutting down): starting another
    // JVM would only fail on a bind error, so say what is wrong instead.
    const part = brokerUp ? "proxy" : "broker";
    throw failure(part, st, `port ${brokerUp ? ports.grpc : ports.broker} is closed while port ${brokerUp ? ports.broker : ports.grpc} answers; run \`bun scripts/stack.ts down\` or free the ports`);
  }
  // Registration is asynchronous to the ports opening: poll the name server for a while.
  if (!(await brokerRegistered(ports))) {
    const r = await waitFor(() => brokerRegistered(ports), 60_000);
    if (!r.ok) throw failure("broker", st, `not registered in cluster ${CLUSTER} at ${endpoint(ports.namesrv)}: ${r.why}`);
  }
  log(`  broker: ready on ${endpoint(ports.broker)} (registered in ${CLUSTER})`);
  log(`  proxy: ready, gRPC ${endpoint(ports.grpc)}, remoting ${endpoint(ports.proxyRemoting)}`);
}

/** Asks the name server (GET_BROKER_CLUSTER_INFO) whether our broker's master is registered at our broker port. */
async function brokerRegistered(ports: Ports): Promise<boolean> {
  const admin = new Admin({ namesrv: endpoint(ports.namesrv), cluster: CLUSTER, timeoutMs: 3000 });
  try {
    const brokers = await admin.brokers();
    return brokers.some((b) => b.master.endsWith(`:${ports.broker}`));
  } catch {
    return false;
  } finally {
    admin.close();
  }
}

export async function statusRocketMQ(st: StackState, ports: Ports): Promise<PartStatus[]> {
  const ns = st.read("namesrv");
  const px = st.read("proxy");
  const owner = (rec: ProcRecord | undefined) =>
    rec && isOurs(rec) ? `pid ${rec.pid}` : rec ? `started pid ${rec.pid} is gone` : "not started by this stack";
  const nsOpen = await portOpen(ports.namesrv);
  const brOpen = await portOpen(ports.broker);
  const grpcOpen = await portOpen(ports.grpc);
  const remOpen = await portOpen(ports.proxyRemoting);
  const reg = nsOpen && brOpen ? await brokerRegistered(ports).catch(() => false) : undefined;
  return [
    { name: "namesrv", ready: nsOpen, detail: `${endpoint(ports.namesrv)} ${nsOpen ? "open" : "closed"}; ${owner(ns)}` },
    {
      name: "broker",
      ready: brOpen && reg !== false,
      detail: `${endpoint(ports.broker)} ${brOpen ? "open" : "closed"}${reg === false ? ", not registered" : ""}; ${owner(px)}`,
    },
    {
      name: "proxy",
      ready: grpcOpen && remOpen,
      detail: `gRPC ${endpoint(ports.grpc)} ${grpcOpen ? "open" : "closed"}, remoting ${endpoint(ports.proxyRemoting)} ${remOpen ? "open" : "closed"}; ${owner(px)}`,
    },
  ];
}
