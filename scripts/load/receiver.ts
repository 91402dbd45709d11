// Receives a topic through a SimpleConsumer with several receive calls in flight (one long-poll
// receive returns at most 32 messages), acks every message, and hands each to `onMessage`.
import type { Config } from "../../lib/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { closeClient, createConsumer, type MessageView } from "../../lib/mq.ts";

/**
 * How long a received message stays invisible: the proxy's minimum. The broker revisits every receive
 * that returned messages this long after it (its pop checkpoint), whether acked or not, and in doing so
 * re-creates a consumer group deleted meanwhile (autoCreateSubscriptionGroup): see removeGroup().
 */
export const INVISIBLE_MS = 10_000;

export interface Receiver {
  /** stops the receive loops (a long poll in progress is not waited for beyond a few seconds) and closes */
  close(): Promise<void>;
  errors: number;
  /** performance.now() of the last receive that returned messages (0: none did) */
  lastMessagesAt: number;
}

export async function startReceiver(
  cfg: Config,
  group: string,
  topic: string,
  tag: string,
  loops: number,
  onMessage: (m: MessageView, at: number) => void,
): Promise<Receiver> {
  // awaitDuration must be >= 5 s or the proxy answers ILLEGAL_POLLING_TIME.
  const consumer = createConsumer(cfg, silentLogger, group, topic, tag, 5_000);
  try {
    await consumer.startup();
  } catch (e) {
    await closeClient(consumer, silentLogger).catch(() => {});
    // The usual cause on a fresh stack: the topics were never created. Say so instead of a stack trace.
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `cannot receive from topic ${topic} at ${cfg.MQ_ENDPOINT}: ${why}` +
        (/route|not found|TOPIC_NOT_FOUND/i.test(why) ? " (run `bun scripts/provision.ts` first?)" : ""),
    );
  }
  let stopped = false;
  const acks = new Set<Promise<unknown>>();
  const r: Receiver = {
    errors: 0,
    lastMessagesAt: 0,
    async close() {
      stopped = true;
      await Promise.race([Promise.all([...running, ...acks]), Bun.sleep(6_000)]);
      await closeClient(consumer, silentLogger);
    },
  };
  const loop = async () => {
    while (!stopped) {
      let batch: MessageView[];
      try {
        batch = await consumer.receive(32, INVISIBLE_MS);
      } catch {
        r.errors++;
        await Bun.sleep(200);
        continue;
      }
      const at = performance.now();
      if (batch.length) r.lastMessagesAt = at;
      for (const m of batch) onMessage(m, at);
      // Acks go out in the background: the next receive need not wait for them.
      const a: Promise<unknown> = Promise.allSettled(batch.map((m) => consumer.ack(m))).finally(() => acks.delete(a));
      acks.add(a);
    }
  };
  const running = Array.from({ length: loops }, loop);
  return r;
}
