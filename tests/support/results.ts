// Collects what the workers publish on a namespace's result topic, through a group of its own.
// Nothing is swallowed: a body that is not JSON, or an ack that fails, is kept in `problems` and fails
// close(); receive errors are retried (the proxy may be restarting) but kept too, for the message.
// `settled()` is the positive event "every message the broker holds for this topic has been received":
// once the publishers are stopped, counts after it are final (no sleep that guesses).
import { parseConfig } from "../../lib/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { closeClient, createConsumer } from "../../lib/mq.ts";
import type { TestNamespace } from "../helpers.ts";
import { waitFor } from "./processes.ts";

export interface Received {
  messageId: string;
  key: string | undefined;
  tag: string | undefined;
  body: Record<string, unknown>;
  raw: Buffer;
  /** user properties (the trace context: lib/observe/tracing.ts) */
  properties: Map<string, string>;
}

/** Messages stored in `topic` (max - min offset over every queue of every broker). */
export async function messagesInTopic(ns: TestNamespace, topic: string): Promise<number> {
  const admin = ns.admin();
  const route = await admin.topicRoute(topic);
  if (!route) throw new Error(`no route for topic ${topic}`);
  let n = 0;
  for (const q of route.queueDatas) {
    const addr = route.brokerDatas.find((b) => b.brokerName === q.brokerName)?.brokerAddrs["0"];
    if (!addr) continue;
    for (let id = 0; id < q.readQueueNums; id++) n += (await admin.maxOffset(addr, topic, id)) - (await admin.minOffset(addr, topic, id));
  }
  return n;
}

export async function collectResults(ns: TestNamespace) {
  const group = await ns.addGroup("results", ns.resultTopic);
  const cfg = parseConfig(ns.env);
  const consumer = createConsumer(cfg, silentLogger, group, ns.resultTopic, "*", 5_000);
  await consumer.startup();
  const byId = new Map<string, Received>();
  const received: Received[] = [];
  const problems: string[] = [];
  const receiveErrors: string[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      let batch;
      try {
        batch = await consumer.receive(32, 15_000);
      } catch (e) {
        receiveErrors.push(String(e));
        await Bun.sleep(200);
        continue;
      }
      for (const m of batch) {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(m.body.toString("utf8"));
        } catch (e) {
          problems.push(`result message ${m.messageId} is not JSON: ${m.body.toString("utf8").slice(0, 200)}`);
          body = {};
        }
        // A redelivery to this collector (its ack was lost) is the same message, not a second result.
        if (!byId.has(m.messageId)) {
          const r = { messageId: m.messageId, key: m.keys[0], tag: m.tag, body, raw: m.body, properties: m.properties };
          byId.set(m.messageId, r);
          received.push(r);
        }
        await consumer.ack(m).catch((e) => problems.push(`ack of result message ${m.messageId} failed: ${e}`));
      }
    }
  })();
  return {
    received,
    problems,
    for: (taskId: string) => received.filter((r) => r.body.task_id === taskId),
    /** Waits until every message stored in the result topic has been received (publishers stopped). */
    async settled(ms = 30_000) {
      let stored = -1;
      await waitFor(async () => received.length >= (stored = await messagesInTopic(ns, ns.resultTopic)), ms,
        () => `the collector to receive all ${stored} result messages (has ${received.length}; receive errors: ${receiveErrors.slice(-3).join("; ")})`);
    },
    async close() {
      stopped = true;
      await Promise.race([loop, Bun.sleep(5_000)]);
      await closeClient(consumer, silentLogger);
      if (problems.length) throw new Error(`result collector: ${problems.join("\n")}`);
    },
  };
}
