// A worker that took a message and never finished it, played by a bare consumer of the request topic.
import { expect } from "bun:test";
import { silentLogger } from "../../lib/log.ts";
import { closeClient, createConsumer } from "../../lib/mq.ts";
import type { TestNamespace } from "../helpers.ts";

/** Takes the first delivery of the message keyed `taskId` and never acks it (hidden 1 s), as a stuck worker would. */
export async function takeAndDrop(ns: TestNamespace, taskId: string) {
  const bare = createConsumer(ns.config, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
  await bare.startup();
  let taken = false;
  try {
    for (let i = 0; i < 10 && !taken; i++)
      for (const m of await bare.receive(8, 10_000))
        if (m.keys[0] === taskId) {
          await bare.changeInvisibleDuration(m, 1_000);
          taken = true;
        }
  } finally {
    await closeClient(bare, silentLogger);
  }
  expect(taken).toBe(true);
}
