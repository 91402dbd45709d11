// RocketMQ clients (rocketmq-client-nodejs over the gRPC proxy), wrapped for what this system needs:
// a publisher that starts lazily and recovers after the broker comes back, and a bounded close.
// Known defects of the client and how we handle them are listed in the README ("RocketMQ client").
import { format } from "node:util";
import { Producer, SimpleConsumer, StatusChecker, type MessageView } from "rocketmq-client-nodejs";
import { createResource } from "rocketmq-client-nodejs/dist/util";
import { Code } from "rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb";
import { AckMessageRequest } from "rocketmq-client-nodejs/proto/apache/rocketmq/v2/service_pb";
import { mqCredentials, type Config } from "./config.ts";
import { type Logger, rateLimited } from "./log.ts";
import type { Context } from "./observe/tracing.ts";
import { RemotingBatchSender } from "./mq/remoting-batch.ts";
import { BATCH_PAUSE_MS, MAX_BATCH_BYTES, SendBatcher, type SendCounters } from "./mq/send-batch.ts";
import { withTimeout } from "./time.ts";
import { timeMq } from "./observe/metrics.ts";
import { tracedSend } from "./observe/messaging.ts";

/** One limiter per logger: a worker's four clients report the same outage once, not four times. */
const clientWarnings = new WeakMap<Logger, ReturnType<typeof rateLimited>>();

/**
 * The client logs through egg-logger to ~/logs/rocketmq by default; route it into ours instead. Its
 * errors come once per failed call, each with the gRPC error's stack: a broker down for 30 s gave a
 * worker ~100 warn lines of 1.5 KB (chaos run 8, docs/reliability.md), beside our own "receive failed;
 * backing off". So an error is logged as its first line, once a minute per kind (the text before its
 * first comma, e.g. "Failed to receive messages"), with `held_back`; the others go to debug.
 */
export function clientLogger(log: Logger, now: () => number = Date.now) {
  const line = (args: unknown[]) => (args[0] instanceof Error ? args[0].message : format(...(args as [string])));
  let warn = clientWarnings.get(log);
  if (!warn) clientWarnings.set(log, (warn = rateLimited(log, 60_000, now)));
  const fields = () => ({ component: "rocketmq-client" });
  return {
    // The client is chatty at info (every heartbeat, route refresh): keep that at debug.
    info: (...a: unknown[]) => log.debug(line(a), fields()),
    debug: (...a: unknown[]) => log.debug(line(a), fields()),
    warn: (...a: unknown[]) => log.debug(line(a), fields()),
    error: (...a: unknown[]) => {
      const first = line(a).split("\n", 1)[0]!.slice(0, 500);
      if (!warn(first.split(",", 1)[0]!.slice(0, 100), first, fields)) log.debug(first, fields());
    },
  };
}

function baseOptions(cfg: Config, log: Logger) {
  const credentials = mqCredentials(cfg);
  return {
    endpoints: cfg.MQ_ENDPOINT,
    namespace: "",
    requestTimeout: cfg.MQ_REQUEST_TIMEOUT_MS,
    logger: clientLogger(log),
    ...(credentials ? { sessionCredentials: credentials } : {}),
    ...(cfg.MQ_TLS ? { sslEnabled: true } : {}),
  };
}

/** Shuts a client down, bounded in time; a client that failed to start is shut down too, so its timers stop. */
export async function closeClient(client: { shutdown(): Promise<void> } | undefined, log: Logger, ms = 5_000) {
  if (!client) return;
  try {
    await withTimeout(client.shutdown(), ms, "rocketmq client shutdown");
  } catch (e) {
    log.warn("rocketmq client shutdown failed", { error: e as Error });
  }
}

const toOptions = (m: OutgoingMessage) => ({
  topic: m.topic, tag: m.tag, keys: [m.key], body: m.body,
  ...(m.properties ? { properties: new Map(Object.entries(m.properties)) } : {}),
  ...(m.deliverAt !== undefined ? { deliveryTimestamp: new Date(m.deliverAt) } : {}),
});

export interface OutgoingMessage {
  topic: string;
  tag: string;
  key: string;
  body: Buffer;
  /** user properties (the trace context: lib/observe/tracing.ts); consumers that do not know them ignore them */
  properties?: Record<string, string>;
  /**
   * A timer message (ms since the epoch): the broker delivers it then. Its topic must be of type DELAY
   * (lib/provision.ts delayTopic). Always sent alone through the gRPC producer: the remoting batch
   * path would drop the timestamp and store it as a normal message.
   */
  deliverAt?: number;
  /**
   * The trace context the message carries in its properties (lib/observe/tracing.ts); with `span`, the
   * parent of a producer span `send <topic>` around the send, whose context it carries instead.
   */
  traceParent?: Context;
  span?: boolean;
}

/**
 * The one producer of a process. Sends of one topic made in the same event-loop turn travel as one
 * batch (lib/mq/send-batch.ts, up to MQ_SEND_BATCH_MAX; sent over remoting, lib/mq/remoting-batch.ts,
 * because the 5.3.3 gRPC proxy gives every message of a batch the first one's key and id); a lone
 * message, and every message of a batch that failed, goes through the gRPC producer. Each send still
 * resolves only when its own message was accepted and rejects alone if that message was refused.
 */
export class Publisher {
  #producer?: Producer;
  #starting?: Promise<Producer>;
  #closed = false;
  readonly #batcher: SendBatcher<OutgoingMessage>;
  #remoting?: RemotingBatchSender;

  constructor(
    private readonly cfg: Config,
    private readonly log: Logger,
    private readonly topics: string[],
    /** tests: a larger batch, to put a message over the broker's limit inside one */
    opts: { maxBatchBytes?: number } = {},
  ) {
    this.#batcher = new SendBatcher<OutgoingMessage>(
      (m) => this.#sendOne(m),
      (ms) => this.#sendMany(ms),
      // The remoting batch path is plain TCP with no ACL signature: with TLS or credentials every
      // message goes through the gRPC proxy instead, so no content leaves unencrypted or unsigned.
      cfg.MQ_TLS || cfg.MQ_ACCESS_KEY ? 1 : cfg.MQ_SEND_BATCH_MAX,
      opts.maxBatchBytes ?? MAX_BATCH_BYTES,
      (e) => log.warn(`batched sends failed; sending one message per request for ${BATCH_PAUSE_MS / 1000} s`, { error: e as Error }),
    );
  }

  /** Requests made and messages accepted so far (tests, benchmarks). */
  get counters(): Readonly<SendCounters> {
    return this.#batcher.counters;
  }

  /** Starts the producer once; after a failure the next call tries again with a new one. */
  private producer(): Promise<Producer> {
    if (this.#closed) return Promise.reject(new Error("publisher is closed"));
    if (this.#producer) return Promise.resolve(this.#producer);
    this.#starting ??= (async () => {
      const p = new Producer({ ...baseOptions(this.cfg, this.log), topics: this.topics, maxAttempts: 2 } as never);
      try {
        await withTimeout(p.startup(), this.cfg.MQ_REQUEST_TIMEOUT_MS * 3, "rocketmq producer startup");
        // Closed meanwhile: close() did not wait for this start, so its producer is shut down here.
        if (this.#closed) throw new Error("publisher is closed");
        this.#producer = p;
        return p;
      } catch (e) {
        await closeClient(p, this.log, 2_000);
        throw e;
      } finally {
        this.#starting = undefined;
      }
    })();
    return this.#starting;
  }

  async start(): Promise<void> {
    await this.producer();
  }

  /** Sends one message; resolves with its message id once the broker has accepted it. */
  send(m: OutgoingMessage): Promise<string> {
    // Traced: the message carries its trace context in its properties (with `span`, its producer span's).
    return tracedSend(m, (properties) => {
      const out = properties ? { ...m, properties: { ...m.properties, ...properties } } : m;
      return out.deliverAt !== undefined ? this.#sendOne(out) : this.#batcher.send(out);
    });
  }

  async #sendOne(m: OutgoingMessage): Promise<string> {
    const p = await this.producer();
    const receipt = await timeMq("send", withTimeout(p.send(toOptions(m)), this.#sendTimeoutMs(), "rocketmq send"));
    return receipt.messageId;
  }

  #sendMany(ms: OutgoingMessage[]): Promise<string[]> {
    if (this.#closed) return Promise.reject(new Error("publisher is closed"));
    this.#remoting ??= new RemotingBatchSender(this.cfg, this.log);
    return timeMq("send_batch", withTimeout(this.#remoting.send(ms[0]!.topic, ms), this.#sendTimeoutMs(), "rocketmq batch send"));
  }

  /** The client tries twice (maxAttempts), each bounded by the request timeout. */
  #sendTimeoutMs() {
    return this.cfg.MQ_REQUEST_TIMEOUT_MS * 2 + 500;
  }

  /**
   * A start under way is not waited for: it takes up to 3 × MQ_REQUEST_TIMEOUT_MS (180 s) against a
   * hung endpoint, past the entry files' shutdown deadlines; it shuts its producer down when it ends.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#remoting?.close();
    const p = this.#producer;
    this.#producer = undefined;
    await closeClient(p, this.log);
  }
}

/** One AckMessageRequest carries at most this many entries. */
const ACK_BATCH = 64;

interface PendingAck {
  m: MessageView;
  resolve(): void;
  reject(e: unknown): void;
}

/**
 * A SimpleConsumer whose ack() coalesces the acks asked for in one turn of the event loop into one
 * AckMessageRequest per proxy and topic (the protocol takes many entries; the client sends one each).
 * Each gRPC call costs the worker an http2 stream open, write and flush (a fifth of its CPU at 1500
 * tasks/s, docs/performance.md); with acks batched, the result send is a task's only call of its own.
 * Each ack still resolves or rejects for its own message from the proxy's per-entry status, with the
 * client's exceptions (StatusChecker); a lone ack goes through the client's own ack(), unchanged.
 */
export class BatchingSimpleConsumer extends SimpleConsumer {
  #pending = new Map<string, PendingAck[]>();
  #scheduled = false;

  override ack(m: MessageView): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const key = `${String(m.endpoints)}\u0000${m.topic}`;
      let list = this.#pending.get(key);
      if (!list) this.#pending.set(key, (list = []));
      list.push({ m, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush() {
    this.#scheduled = false;
    const batches = [...this.#pending.values()];
    this.#pending.clear();
    for (const list of batches)
      for (let i = 0; i < list.length; i += ACK_BATCH) void this.#ackBatch(list.slice(i, i + ACK_BATCH));
  }

  async #ackBatch(batch: PendingAck[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch as [PendingAck];
      return super.ack(one.m).then(one.resolve, one.reject);
    }
    try {
      const first = batch[0]!.m;
      const request = new AckMessageRequest()
        .setGroup(createResource((this as unknown as { consumerGroup: string }).consumerGroup))
        .setTopic(createResource(first.topic));
      for (const { m } of batch) request.addEntries().setMessageId(m.messageId).setReceiptHandle(m.receiptHandle);
      const timeout = (this as unknown as { requestTimeout: number }).requestTimeout;
      const response = (await this.ackMessageViaRpc(first.endpoints, request, timeout)).toObject();
      const byHandle = new Map(response.entriesList.map((e) => [e.receiptHandle, e.status]));
      const byId = new Map(response.entriesList.map((e) => [e.messageId, e.status]));
      for (const p of batch) {
        // Entries the proxy did not answer for share the request's status.
        const status = byHandle.get(p.m.receiptHandle) ?? byId.get(p.m.messageId) ?? response.status;
        try {
          if (status && status.code !== Code.OK) StatusChecker.check(status);
          p.resolve();
        } catch (e) {
          p.reject(e);
        }
      }
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }
}

export function createConsumer(cfg: Config, log: Logger, group: string, topic: string, tag = "*", awaitMs = 10_000) {
  return new BatchingSimpleConsumer({
    ...baseOptions(cfg, log),
    consumerGroup: group,
    subscriptions: new Map([[topic, tag]]),
    awaitDuration: awaitMs,
  });
}

export type { MessageView };
