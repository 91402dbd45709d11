// A private cluster-topology stack for one test file (`bun scripts/stack.ts up --topology cluster` on
// its own folder and its own ports): Redis Cluster (3 masters + 3 replicas) and RocketMQ with
// broker-a and broker-b behind one cluster-mode proxy. Tests crash its parts; the shared stack the
// other tests use is never touched.
import { afterAll, afterEach, beforeAll } from "bun:test";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { allClusterPorts, type ClusterPorts, clusterPorts } from "../../scripts/stack/cluster-ports.ts";
import { clusterNodes } from "../../scripts/stack/cluster-redis.ts";
import { ephemeralLow, portBindable } from "../../scripts/stack/ports.ts";
import { isOurs, type ProcRecord } from "../../scripts/stack/state.ts";
import { createNamespace, type TestNamespace } from "../helpers.ts";
import { stopAll } from "../support/processes.ts";

const STACK = join(import.meta.dir, "..", "..", "scripts", "stack.ts");

/**
 * A base whose every port (the Redis bus ports at +10000 included) binds now. Bases come from below
 * the kernel's ephemeral range, bus ports too, so no outgoing connection takes one meanwhile.
 */
export async function freeClusterBase(): Promise<ClusterPorts> {
  const top = Math.min(ephemeralLow(), 32_768) - 10_000 - 40;
  const slots = Math.floor((top - 10_000) / 40);
  if (slots < 1) throw new Error(`no room for a cluster stack's ports below the ephemeral range (${ephemeralLow()})`);
  for (let i = 0; i < 50; i++) {
    const ports = clusterPorts(10_000 + Math.floor(Math.random() * slots) * 40);
    let free = true;
    for (const p of allClusterPorts(ports)) if (!(free = await portBindable(p))) break;
    if (free) return ports;
  }
  throw new Error("no free port block for a cluster stack found");
}

export async function clusterStack() {
  const ports = await freeClusterBase();
  const dir = `/tmp/agent-prod-cluster-stack-${process.pid}-${ports.base}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env.STACK_CLUSTER_BASE = String(ports.base);
  const seen = new Map<number, ProcRecord>();
  const record = (part: string): ProcRecord | undefined => {
    try {
      const r = JSON.parse(readFileSync(join(dir, "pids", `${part}.json`), "utf8")) as ProcRecord;
      seen.set(r.pid, r);
      return r;
    } catch {
      return undefined;
    }
  };

  /** `bun scripts/stack.ts <cmd> --topology cluster --dir <dir>`; never throws. */
  async function stack(cmd: "up" | "down" | "status") {
    const p = Bun.spawn(["bun", STACK, cmd, "--topology", "cluster", "--dir", dir], { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out: out + err };
  }

  const redisNodes = ports.redis.map((p) => `127.0.0.1:${p}`).join(",");
  return {
    ports,
    dir,
    stack,
    /** What `bun scripts/stack.ts env --topology cluster` prints, for createNamespace({ env }) and child processes. */
    endpoints: {
      REDIS_CLUSTER_NODES: redisNodes,
      MQ_ENDPOINT: `127.0.0.1:${ports.grpc}`,
      MQ_NAMESRV: `127.0.0.1:${ports.namesrv}`,
      MQ_CLUSTER: "DefaultCluster",
    },
    async up() {
      const r = await stack("up");
      if (r.code !== 0) throw new Error(`cluster stack up failed:\n${r.out}`);
      return r.out;
    },
    /** The Redis nodes that are masters now (from CLUSTER NODES of a live node). */
    masters(): number[] {
      for (const p of ports.redis) {
        const nodes = clusterNodes(p);
        if (nodes?.length) return nodes.filter((n) => n.role === "master" && !n.failed && n.slots).map((n) => n.port);
      }
      return [];
    },
    /** Kills one part (broker-a, broker-b, proxy, namesrv, redis-<port>) as a crash would, and waits until it is gone. */
    async crash(part: string) {
      const r = record(part);
      if (!r || !isOurs(r)) throw new Error(`${part} is not running`);
      process.kill(r.pid, "SIGKILL");
      for (let i = 0; i < 100 && isOurs(r); i++) await Bun.sleep(100);
    },
    /** SIGKILLs everything the stack started (its data is thrown away: no need for a graceful stop) and removes its folder. */
    async destroy() {
      try {
        for (const f of readdirSync(join(dir, "pids"))) record(f.replace(/\.json$/, ""));
      } catch {}
      for (const r of seen.values()) if (isOurs(r)) process.kill(r.pid, "SIGKILL");
      for (const r of seen.values()) for (let i = 0; i < 100 && isOurs(r); i++) await Bun.sleep(100);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
export type ClusterStack = Awaited<ReturnType<typeof clusterStack>>;

/**
 * The hooks of a test file that owns a private cluster stack: up (with a namespace of `queues` queues
 * per topic) before the first test; API and workers stopped after each test, so a failing test leaves
 * none to take the next test's tasks; everything down after the last.
 */
export function onClusterStack(queues: number) {
  const ctx = { stack: undefined as unknown as ClusterStack, ns: undefined as unknown as TestNamespace, queues };
  beforeAll(async () => {
    ctx.stack = await clusterStack();
    const started = Date.now();
    await ctx.stack.up();
    console.log(`[cluster stack] up in ${((Date.now() - started) / 1000).toFixed(1)} s (${ctx.stack.dir})`);
    ctx.ns = await createNamespace({ env: ctx.stack.endpoints, queues });
  }, 300_000);
  afterEach(() => stopAll(), 60_000);
  afterAll(async () => {
    await stopAll();
    ctx.ns?.admin().close();
    await ctx.stack?.destroy();
  }, 120_000);
  return ctx;
}
