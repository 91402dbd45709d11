// The system on the cluster topology (Redis Cluster 3 masters + 3 replicas; RocketMQ broker-a and
// broker-b behind one cluster-mode proxy), on a private stack of this file: the stack itself, the
// end-to-end flow through the API and workers, and three workers sharing the load.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { cli } from "../../scripts/stack/cluster-redis.ts";
import { createNamespace, type TestNamespace } from "../helpers.ts";
import { stopAll } from "../support/processes.ts";
import { clusterStack, type ClusterStack } from "./stack.ts";
import { messagesPerBroker, startApi, startWorkers } from "./system.ts";

let stack: ClusterStack;
let ns: TestNamespace;
const QUEUES = 4;

beforeAll(async () => {
  stack = await clusterStack();
  const started = Date.now();
  await stack.up();
  console.log(`[cluster stack] up in ${((Date.now() - started) / 1000).toFixed(1)} s (${stack.dir})`);
  ns = await createNamespace({ env: stack.endpoints, queues: QUEUES });
}, 300_000);

// A test that fails before stopping its API and workers must not leave them to take the next test's tasks.
afterEach(() => stopAll(), 60_000);

afterAll(async () => {
  await stopAll();
  ns?.admin().close();
  await stack?.destroy();
}, 120_000);

describe("cluster topology", () => {
  test("up: Redis Cluster of 3 masters with a replica each, broker-a and broker-b registered, provisioning on both", async () => {
    const st = await stack.stack("status");
    expect(st.code, st.out).toBe(0);
    expect(stack.masters()).toHaveLength(3);
    expect(st.out).toMatch(/ready\s+redis-cluster\s+masters \d+ \d+ \d+; replicas/);
    const brokers = await ns.admin().brokers();
    expect(brokers.map((b) => b.name).sort()).toEqual(["broker-a", "broker-b"]);
    // createNamespace ran lib/provision.ts as `bun scripts/provision.ts` does: every topic and group on each broker.
    for (const b of brokers) {
      for (const t of [ns.requestTopic, ns.resultTopic, `%DLQ%${ns.group}`])
        expect((await ns.admin().getTopicConfig(b.master, t))?.readQueueNums, `${t} on ${b.name}`).toBeGreaterThan(0);
      for (const g of [ns.group, `${ns.group}-dlq`]) expect(await ns.admin().getGroupConfig(b.master, g), `${g} on ${b.name}`).not.toBeNull();
    }
    // `env` prints what the services need for this stack.
    const env = Bun.spawnSync(["bun", "scripts/stack.ts", "env", "--topology", "cluster"], {
      cwd: `${import.meta.dir}/../..`,
      env: { ...process.env, STACK_CLUSTER_BASE: String(stack.ports.base) },
    }).stdout.toString();
    for (const [k, v] of Object.entries(stack.endpoints)) expect(env).toContain(`export ${k}=${v}\n`);
    expect(env).toContain("unset REDIS_URL");
  }, 60_000);

  test("end to end: tasks POSTed to the API end done with a result, their messages on both brokers, their keys on all three masters", async () => {
    const sys = await startApi(ns);
    const [worker] = startWorkers(ns, 1, { AGENT_DELAY_MS: "200" });
    await worker!.waitForLog("worker running", 60_000);
    // One POST at a time: sends made in one event-loop turn travel as one batch, stored in one queue
    // of one broker (lib/mq/send-batch.ts); lone sends are spread over both brokers' queues.
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) ids.push(await sys.submit(`cluster flow ${i}`));
    await sys.allDone(ids, 90_000);
    for (const id of ids) {
      const v = await sys.view(id);
      expect(v?.result, `result of ${id}`).toBeTruthy();
    }
    const perBroker = await messagesPerBroker(stack, ns.requestTopic, QUEUES);
    expect(perBroker["broker-a"], JSON.stringify(perBroker)).toBeGreaterThan(0);
    expect(perBroker["broker-b"], JSON.stringify(perBroker)).toBeGreaterThan(0);
    for (const port of stack.masters()) expect(Number(cli(port, "dbsize")), `keys on master ${port}`).toBeGreaterThan(0);
    expect(await worker!.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 180_000);

  test("three workers share the load: each runs at least 20 % of the tasks", async () => {
    const sys = await startApi(ns);
    // 4 tasks at a time per worker, 1 s each: no worker can take the whole backlog.
    const workers = startWorkers(ns, 3, { AGENT_DELAY_MS: "1000", WORKER_CONCURRENCY: "4" });
    await Promise.all(workers.map((w) => w.waitForLog("worker running", 60_000)));
    // Warm-up, not counted: a worker whose RocketMQ producer was slow to start (seen on a box at load
    // 30) pauses receiving until its first results go out; the share is judged in the steady state.
    await sys.allDone(await Promise.all(Array.from({ length: 24 }, (_, i) => sys.submit(`warm-up ${i}`))), 120_000);
    const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => sys.submit(`share ${i}`)));
    await sys.allDone(ids, 120_000);
    // Tasks each worker ran (its "task running" lines; a task run twice after a lost lease counts for both).
    const mine = new Set(ids);
    const ran = workers.map((w) => new Set(w.logs("task running").map((l) => String(l.task_id)).filter((id) => mine.has(id))));
    const counts = ran.map((r) => r.size);
    console.log(`[three workers] tasks run per worker: ${counts.join(", ")} of ${ids.length}`);
    const tails = () => workers.map((w, i) => `--- worker ${i} (${counts[i]} run)\n${w.raw.filter((l) => !l.includes('"task ')).slice(-15).join("\n")}`).join("\n");
    expect(new Set(ran.flatMap((r) => [...r])).size, "every task ran on one of the workers").toBe(ids.length);
    for (const c of counts) expect(c / ids.length, `tasks run per worker ${counts}\n${tails()}`).toBeGreaterThanOrEqual(0.2);
    for (const w of workers) expect(await w.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 240_000);
});
