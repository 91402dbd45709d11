// Crashes on the cluster topology, on a private cluster stack of this file, while the API takes a
// task every 100 ms and two workers run them:
// - a Redis master is SIGKILLed and its replica takes over: every task the API accepted ends done;
// - broker-b is SIGKILLed: POSTs fail for a few seconds at most, new tasks go to broker-a, and every
//   accepted task ends done once broker-b is back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { clusterNodes } from "../../scripts/stack/cluster-redis.ts";
import { createNamespace, type TestNamespace } from "../helpers.ts";
import { stopAll, waitFor } from "../support/processes.ts";
import { clusterStack, type ClusterStack } from "./stack.ts";
import { longestOutageMs, messagesPerBroker, postLoop, startApi, startWorkers } from "./system.ts";

let stack: ClusterStack;
let ns: TestNamespace;
const QUEUES = 4;
// Short invisibility: a message whose ack was lost with its broker or Redis comes back within 10 s.
const WORKER_ENV = { AGENT_DELAY_MS: "1000", MQ_INVISIBLE_MS: "10000", WORKER_CONCURRENCY: "16" };

beforeAll(async () => {
  stack = await clusterStack();
  const started = Date.now();
  await stack.up();
  console.log(`[cluster stack] up in ${((Date.now() - started) / 1000).toFixed(1)} s (${stack.dir})`);
  ns = await createNamespace({ env: stack.endpoints, queues: QUEUES });
}, 300_000);

afterAll(async () => {
  await stopAll();
  ns?.admin().close();
  await stack?.destroy();
}, 120_000);

async function startSystem() {
  await stack.up(); // whole again after an earlier test's crash (idempotent)
  const sys = await startApi(ns, { MQ_INVISIBLE_MS: WORKER_ENV.MQ_INVISIBLE_MS });
  const workers = startWorkers(ns, 2, WORKER_ENV);
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
    const [victim] = stack.masters();
    const replica = clusterNodes(victim!)
      ?.filter((n) => n.role === "replica" && n.masterId === clusterNodes(victim!)?.find((m) => m.port === victim)?.id)
      .map((n) => n.port)[0];
    await stack.crash(`redis-${victim}`);
    const killedAt = Date.now();
    // The replica is promoted once the others agree its master failed (cluster-node-timeout 5 s).
    await waitFor(() => stack.masters().length === 3 && !stack.masters().includes(victim!), 60_000, () => `a replica of ${victim} promoted; masters ${stack.masters()}`);
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
    await stack.up();
    expect(stack.masters()).not.toContain(victim);
    expect((await stack.stack("status")).code).toBe(0);
  }, 400_000);

  test("broker-b is SIGKILLed mid-run: POSTs fail for seconds at most, new tasks go to broker-a, all end done after it returns", async () => {
    const system = await startSystem();
    const load = postLoop(system.sys, "broker failover");
    await waitFor(() => load.accepted().length >= 20, 60_000, "20 tasks accepted before the crash");
    // Paused around the crash, so every task accepted after it was sent while broker-b was dead.
    await load.pause();
    const onA = (await messagesPerBroker(stack, ns.requestTopic, QUEUES))["broker-a"]!;
    const acceptedAtKill = load.accepted().length;
    await stack.crash("broker-b");
    const killedAt = Date.now();
    load.resume();
    await waitFor(() => load.history.filter((h) => h.id && h.at > killedAt + 10_000).length >= 20, 90_000, "20 tasks accepted 10 s after the crash");
    const history = await load.stop();
    const ids = load.accepted();
    const afterKill = ids.length - acceptedAtKill;
    const grewOnA = (await messagesPerBroker(stack, ns.requestTopic, QUEUES))["broker-a"]! - onA;
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
    await stack.up();
    await system.sys.allDone(ids, 180_000);
    await stopSystem(system);
  }, 400_000);
});
