// One message through a real RocketMQ with rocketmq-client-nodejs under Bun: a Producer sends, a
// SimpleConsumer receives, extends the invisible time, and acks. Imported by tests/mq-smoke.test.ts,
// and run as its own process there (`bun tests/mq-roundtrip.ts`) to prove the client lets a process
// exit by itself once both clients are shut down.
import { Producer, SimpleConsumer } from "rocketmq-client-nodejs";

// The client's default logger writes to ~/logs/rocketmq; keep tests quiet and the home clean.
const quiet = { info() {}, warn() {}, debug() {}, error: (...a: unknown[]) => console.error("[rocketmq]", ...a) };

export async function roundtrip(opts: { endpoint: string; topic: string; group: string; body: string }) {
  const producer = new Producer({ endpoints: opts.endpoint, namespace: "", logger: quiet as never, topics: [opts.topic] });
  const consumer = new SimpleConsumer({
    endpoints: opts.endpoint,
    namespace: "",
    logger: quiet as never,
    consumerGroup: opts.group,
    subscriptions: new Map([[opts.topic, "*"]]),
    awaitDuration: 5_000,
  });
  await producer.startup();
  await consumer.startup();
  try {
    const receipt = await producer.send({ topic: opts.topic, body: Buffer.from(opts.body), keys: [opts.body] });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const msgs = await consumer.receive(16, 30_000);
      for (const m of msgs) {
        if (m.body.toString() !== opts.body) {
          await consumer.ack(m);
          continue;
        }
        await consumer.changeInvisibleDuration(m, 20_000);
        await consumer.ack(m);
        return { messageId: receipt.messageId, receivedId: m.messageId, attempt: m.deliveryAttempt };
      }
    }
    throw new Error(`message ${receipt.messageId} not received within 60 s`);
  } finally {
    await consumer.shutdown().catch((e) => console.error("consumer shutdown:", e));
    await producer.shutdown().catch((e) => console.error("producer shutdown:", e));
  }
}

if (import.meta.main) {
  const [endpoint, topic, group, body] = process.argv.slice(2);
  if (!endpoint || !topic || !group || !body) {
    console.error("usage: bun tests/mq-roundtrip.ts ENDPOINT TOPIC GROUP BODY");
    process.exit(2);
  }
  const r = await roundtrip({ endpoint, topic, group, body });
  console.log(JSON.stringify(r));
  // No process.exit here on purpose: the test asserts that the process ends on its own.
}
