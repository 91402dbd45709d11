// The system on the cluster topology (Redis Cluster 3 masters + 3 replicas; RocketMQ broker-a and
// broker-b behind one cluster-mode proxy), on a private stack of this file: the stack itself, the
// end-to-end flow through the API and workers, and three workers sharing the load.
import { describe, expect, test } from "bun:test";
import { cli } from "../../scripts/stack/cluster-redis.ts";
import { onClusterStack } from "./stack.ts";
import { messagesPerBroker, startApi, startWorkers } from "./system.ts";

const ctx = onClusterStack(4);

describe("cluster topology", () => {
  test("up: Redis Cluster of 3 masters with a replica each, broker-a and broker-b registered, provisioning on both", async () => {
    const st = await ctx.stack.stack("status");
    expect(st.code, st.out).toBe(0);
    expect(ctx.stack.masters()).toHaveLength(3);
    expect(st.out).toMatch(/ready\s+redis-cluster\s+masters \d+ \d+ \d+; replicas/);
    const brokers = await ctx.ns.admin().brokers();
    expect(brokers.map((b) => b.name).sort()).toEqual(["broker-a", "broker-b"]);
    // createNamespace ran lib/provision.ts as `bun scripts/provision.ts` does: every topic and group on each broker.
    for (const b of brokers) {
      for (const t of [ctx.ns.requestTopic, ctx.ns.resultTopic, `%DLQ%${ctx.ns.group}`])
        expect((await ctx.ns.admin().getTopicConfig(b.master, t))?.readQueueNums, `${t} on ${b.name}`).toBeGreaterThan(0);
      for (const g of [ctx.ns.group, `${ctx.ns.group}-dlq`]) expect(await ctx.ns.admin().getGroupConfig(b.master, g), `${g} on ${b.name}`).not.toBeNull();
    }
    // `env` prints what the services need for this stack.
    const env = Bun.spawnSync(["bun", "scripts/stack.ts", "env", "--topology", "cluster"], {
      cwd: `${import.meta.dir}/../..`,
      env: { ...process.env, STACK_CLUSTER_BASE: String(ctx.stack.ports.base) },
    }).stdout.toString();
    for (const [k, v] of Object.entries(ctx.stack.endpoints)) expect(env).toContain(`export ${k}=${v}\n`);
    expect(env).toContain("unset REDIS_URL");
  }, 60_000);

  test("end to end: tasks POSTed to the API end done with a result, their messages on both brokers, their keys on all three masters", async () => {
    const sys = await startApi(ctx.ns);
    const [worker] = startWorkers(ctx.ns, 1, { AGENT_DELAY_MS: "200" });
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
    const perBroker = await messagesPerBroker(ctx.stack, ctx.ns.requestTopic, ctx.queues);
    expect(perBroker["broker-a"], JSON.stringify(perBroker)).toBeGreaterThan(0);
    expect(perBroker["broker-b"], JSON.stringify(perBroker)).toBeGreaterThan(0);
    for (const port of ctx.stack.masters()) expect(Number(cli(port, "dbsize")), `keys on master ${port}`).toBeGreaterThan(0);
    expect(await worker!.stop()).toBe(0);
    expect(await sys.api.stop()).toBe(0);
  }, 180_000);

  test("three workers share the load: each runs at least 20 % of the tasks", async () => {
    const sys = await startApi(ctx.ns);
    // 4 tasks at a time per worker, 1 s each: no worker can take the whole backlog.
    const workers = startWorkers(ctx.ns, 3, { AGENT_DELAY_MS: "1000", WORKER_CONCURRENCY: "4" });
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
