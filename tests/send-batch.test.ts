// Publisher.send coalesces the sends of one event-loop turn into batches (lib/mq/send-batch.ts, sent
// over remoting: lib/mq/remoting-batch.ts). Against the real broker: many concurrent sends are each
// answered with their own message's id, a consumer sees every message once with its own key, id and
// body (what the gRPC proxy's batches got wrong), and a message the broker refuses fails alone while
// the rest of its batch is delivered.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeClient, createConsumer, Publisher, type OutgoingMessage } from "../lib/mq.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { waitFor } from "./support/processes.ts";

const LONG = 120_000;
const N = 100;

let ns: TestNamespace;
let publisher: Publisher;
beforeAll(async () => {
  ns = await createNamespace({ queues: 4 });
  // Batches up to 16 MiB, so that a message over the broker's 4 MiB limit travels inside one.
  publisher = new Publisher(parseConfig({ ...ns.env, MQ_SEND_BATCH_MAX: "32" }), silentLogger, [ns.requestTopic], {
    maxBatchBytes: 16 * 1024 * 1024,
  });
  await publisher.start();
}, LONG);
afterAll(async () => {
  await publisher?.close();
  await ns?.cleanup();
}, LONG);

const message = (key: string, body: Buffer | string): OutgoingMessage => ({
  topic: ns.requestTopic,
  tag: "BatchTest",
  key,
  body: typeof body === "string" ? Buffer.from(body) : body,
});

test("concurrent sends share requests, each resolves with its own id, a refused one fails alone", async () => {
  const before = { ...publisher.counters };
  const good = Array.from({ length: N }, (_, i) => message(`k${i}`, `body-${i}`));
  // Over the broker's 4 MiB limit (maxMessageSize), inside a batch of good messages.
  const tooLarge = message("too-large", Buffer.alloc(4 * 1024 * 1024 + 1, 120));
  const all = [...good.slice(0, 40), tooLarge, ...good.slice(40)];
  const outcomes = await Promise.allSettled(all.map((m) => publisher.send(m)));

  const byKey = new Map<string, PromiseSettledResult<string>>(all.map((m, i) => [m.key, outcomes[i]!]));
  expect(byKey.get(tooLarge.key)!.status).toBe("rejected");
  const ids = new Map<string, string>();
  for (const m of good) {
    const o = byKey.get(m.key)!;
    expect(o.status, `${m.key}: ${o.status === "rejected" ? String(o.reason) : ""}`).toBe("fulfilled");
    ids.set(m.key, (o as PromiseFulfilledResult<string>).value);
  }
  expect(new Set(ids.values()).size).toBe(N);

  // Batched: far fewer requests than messages, and the refused batch was split to isolate the large one.
  const requests = publisher.counters.requests - before.requests;
  expect(publisher.counters.messages - before.messages).toBe(N);
  expect(publisher.counters.splits - before.splits).toBeGreaterThanOrEqual(1);
  expect(requests).toBeLessThan(N);

  // Every accepted message is on the topic once, under the id its sender was given.
  const consumer = createConsumer(ns.config, silentLogger, ns.group, ns.requestTopic, "*", 5_000);
  await consumer.startup();
  const seen = new Map<string, { id: string; body: string }>();
  try {
    await waitFor(
      async () => {
        for (const v of await consumer.receive(32, 30_000)) {
          const key = v.keys[0]!;
          expect(seen.has(key), `message ${key} delivered twice`).toBe(false);
          seen.set(key, { id: v.messageId, body: v.body.toString("utf8") });
          await consumer.ack(v);
        }
        return seen.size >= N;
      },
      60_000,
      () => `all ${N} messages received (${seen.size} so far)`,
    );
  } finally {
    await closeClient(consumer, silentLogger);
  }
  for (const [i, m] of good.entries()) {
    expect(seen.get(m.key)).toEqual({ id: ids.get(m.key)!, body: `body-${i}` });
  }
  expect(seen.has(tooLarge.key)).toBe(false);
}, LONG);

test("with MQ_SEND_BATCH_MAX=1 every send is a request of its own", async () => {
  const single = new Publisher(parseConfig({ ...ns.env, MQ_SEND_BATCH_MAX: "1" }), silentLogger, [ns.requestTopic]);
  try {
    const ids = await Promise.all(Array.from({ length: 5 }, (_, i) => single.send(message(`s${i}`, `single-${i}`))));
    expect(new Set(ids).size).toBe(5);
    expect(single.counters.requests).toBe(5);
  } finally {
    await single.close();
  }
}, LONG);

test("when the broker cannot be reached over remoting, sends fall back to one gRPC request each", async () => {
  // A name server nobody listens on: the batch path fails to find a route; the gRPC path still works.
  const cfg = parseConfig({ ...ns.env, MQ_SEND_BATCH_MAX: "32", MQ_NAMESRV: "127.0.0.1:1" });
  const fallback = new Publisher(cfg, silentLogger, [ns.requestTopic]);
  try {
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => fallback.send(message(`f${i}`, `fallback-${i}`))));
    expect(new Set(ids).size).toBe(10);
    expect(fallback.counters.splits).toBe(1);
    // Batching pauses after such a failure: the next sends go one per request at once.
    await Promise.all(Array.from({ length: 5 }, (_, i) => fallback.send(message(`g${i}`, `paused-${i}`))));
    expect(fallback.counters.requests).toBe(1 + 10 + 5);
  } finally {
    await fallback.close();
  }
}, LONG);
