// Collects what the workers publish on a namespace's result topic, through a group of its own.
import { parseConfig } from "../../lib/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { closeClient, createConsumer } from "../../lib/mq.ts";
import type { TestNamespace } from "../helpers.ts";

export interface Received {
  key: string | undefined;
  tag: string | undefined;
  body: Record<string, unknown>;
  raw: Buffer;
}

export async function collectResults(ns: TestNamespace) {
  const group = await ns.addGroup("results", ns.resultTopic);
  const cfg = parseConfig(ns.env);
  const consumer = createConsumer(cfg, silentLogger, group, ns.resultTopic, "*", 5_000);
  await consumer.startup();
  const received: Received[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        for (const m of await consumer.receive(32, 15_000)) {
          received.push({ key: m.keys[0], tag: m.tag, body: JSON.parse(m.body.toString("utf8")), raw: m.body });
          await consumer.ack(m);
        }
      } catch {
        await Bun.sleep(200);
      }
    }
  })();
  return {
    received,
    for: (taskId: string) => received.filter((r) => r.body.task_id === taskId),
    async close() {
      stopped = true;
      await Promise.race([loop, Bun.sleep(5_000)]);
      await closeClient(consumer, silentLogger);
    },
  };
}
