// Crashes on the cluster topology, on a private cluster stack of this file, while the API takes a
// task every 100 ms and two workers run them:
// - a Redis master is SIGKILLed and its replica takes over: every task the API accepted ends done;
// - broker-b is SIGKILLed: POSTs fail for a few seconds at most, new tasks go to broker-a, and every
//   accepted task ends done once broker-b is back.
import { describe, expect, test } from "bun:test";
import { clusterNodes } from "../../scripts/stack/cluster-redis.ts";
import { waitFor } from "../support/processes.ts";
import { onClusterStack } from "./stack.ts";
import { longestOutageMs, messagesPerBroker, postLoop, startApi, startWorkers } from "./system.ts";

const ctx = onClusterStack(4);
// Short invisibility: a message whose ack was lost with its broker or Redis comes back within 10 s.
const WORKER_ENV = { AGENT_DELAY_MS: "1000", MQ_INVISIBLE_MS: "10000", WORKER_CONCURRENCY: "16" };

async function startSystem() {
  await ctx.stack.up(); // whole again after an earlier test's crash (idempotent)
  const sys = await startApi(ctx.ns, { MQ_INVISIBLE_MS: WORKER_ENV.MQ_INVISIBLE_MS });
  const workers = startWorkers(ctx.ns, 2, WORKER_ENV);
  await Promise.all(workers.map((w) => w.waitForLog("worker running", 60_000)));
  return { sys, workers };
}

async function stopSystem({ sys, workers }: Awaited<ReturnType<typeof startSystem>>) {
  for (const w of workers) expect(await w.stop()).toBe(0);
  expect(await sys.api.stop()).toBe(0);
}

describe("cluster faults", () => {
  test("a Redis master is SIGKILLed mid-run and its replica takes over: every accepted task ends done", async () => {
    const system = await startSystem();
    const load = postLoop(system.sys, "redis failover");
    await waitFor(() => load.accepted().length >= 20, 60_000, "20 tasks accepted before the crash");
    const [victim] = ctx.stack.masters();
    const replica = clusterNodes(victim!)
      ?.filter((n) => n.role === "replica" && n.masterId === clusterNodes(victim!)?.find((m) => m.port === victim)?.id)
      .map((n) => n.port)[0];
    await ctx.stack.crash(`redis-${victim}`);
    const killedAt = Date.now();
    // The replica is promoted once the others agree its master failed (cluster-node-timeout 5 s).
    await waitFor(() => ctx.stack.masters().length === 3 && !ctx.stack.masters().includes(victim!), 60_000, () => `a replica of ${victim} promoted; masters ${ctx.stack.masters()}`);
    const promotedAfter = Date.now() - killedAt;
    await waitFor(() => load.history.filter((h) => h.id && h.at > Date.now() - 2_000).length > 0, 60_000, "POSTs accepted again");
    await Bun.sleep(2_000); // keep posting on the healed cluster for a moment
    const history = await load.stop();
    const ids = load.accepted();
    const after = history.filter((h) => h.id && h.at > killedAt).length;
    console.log(
      `[redis failover] master ${victim} killed, replica ${replica} promoted after ${promotedAfter} ms; ` +
        `${ids.length} accepted (${after} after the crash), ${history.length - ids.length} answered 503, longest outage ${longestOutageMs(history)} ms`,
    );
    expect(after).toBeGreaterThan(0);
    await system.sys.allDone(ids, 180_000);
    await stopSystem(system);
    // `up` starts the killed node again; it rejoins as a replica of the node that replaced it.
    await ctx.stack.up();
    expect(ctx.stack.masters()).not.toContain(victim);
    expect((await ctx.stack.stack("status")).code).toBe(0);
  }, 400_000);

  test("broker-b is SIGKILLed mid-run: POSTs fail for seconds at most, new tasks go to broker-a, all end done after it returns", async () => {
    const system = await startSystem();
    const load = postLoop(system.sys, "broker failover");
    await waitFor(() => load.accepted().length >= 20, 60_000, "20 tasks accepted before the crash");
    // Paused around the crash, so every task accepted after it was sent while broker-b was dead.
    await load.pause();
    const onA = (await messagesPerBroker(ctx.stack, ctx.ns.requestTopic, ctx.queues))["broker-a"]!;
    const acceptedAtKill = load.accepted().length;
    await ctx.stack.crash("broker-b");
    const killedAt = Date.now();
    load.resume();
    await waitFor(() => load.history.filter((h) => h.id && h.at > killedAt + 10_000).length >= 20, 90_000, "20 tasks accepted 10 s after the crash");
    const history = await load.stop();
    const ids = load.accepted();
    const afterKill = ids.length - acceptedAtKill;
    const grewOnA = (await messagesPerBroker(ctx.stack, ctx.ns.requestTopic, ctx.queues))["broker-a"]! - onA;
    const outage = longestOutageMs(history);
    console.log(
      `[broker failover] ${ids.length} accepted (${afterKill} after the crash, broker-a took ${grewOnA} new messages), ` +
        `${history.length - ids.length} answered 503, longest outage ${outage} ms`,
    );
    // What a client sees: a few seconds of 503 at most (the proxy skips the dead broker after its first failure).
    expect(outage).toBeLessThan(10_000);
    // Every task accepted while broker-b was down went to broker-a.
    expect(grewOnA).toBeGreaterThanOrEqual(afterKill);
    // broker-b comes back with the messages it held; the workers finish them.
    await ctx.stack.up();
    await system.sys.allDone(ids, 180_000);
    await stopSystem(system);
  }, 400_000);
});
