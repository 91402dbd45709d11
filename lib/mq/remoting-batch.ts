// Batched sends over RocketMQ's remoting protocol (SEND_BATCH_MESSAGE), straight to the master broker
// of a queue, found through the name server (MQ_NAMESRV) as every remoting client does.
//
// Why not the gRPC proxy: a SendMessageRequest with several messages reaches the 5.3.3 broker as one
// batch whose *batch* properties are the first message's (ProducerProcessor.buildSendMessageRequestHeader),
// and the broker appends the batch properties to each message's own (MessageExtEncoder.encode(batch)),
// where they win. Measured on the stack: every message of a gRPC batch came out with the first
// message's key and message id (docs/performance.md). Here the batch header carries no message
// properties, so each message keeps its own key, tag and id.
//
// Each message gets its id (UNIQ_KEY) from the same factory the gRPC client uses, so consumers see ids
// of the usual form; the broker stores the batch atomically in one queue and answers for it as a whole.
import { MessageIdFactory } from "rocketmq-client-nodejs/dist/message/MessageId";
import { mqCredentials, type Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { Admin, type TopicRoute } from "../rocketmq/admin.ts";
import { RequestCode, ResponseCode } from "../rocketmq/codes.ts";
import { RemotingClient, RemotingError } from "../rocketmq/remoting.ts";

export interface BatchEntry {
  tag: string;
  key: string;
  body: Buffer;
  /** user properties (the trace context), stored beside the system ones as the gRPC path stores them */
  properties?: Record<string, string>;
}

/** How long a topic's route is used before it is asked for again. */
const ROUTE_TTL_MS = 30_000;
const NAME_VALUE = "\u0001";
const PROPERTY_END = "\u0002";
const WRITABLE = 2;

interface Queue {
  brokerName: string;
  addr: string;
  queueId: number;
}

interface Route {
  queues: Queue[];
  next: number;
  fetchedAt: number;
}

/** A message the batch format cannot carry (its properties over 32 KiB): the batch goes one by one. */
export class UnbatchableMessageError extends TypeError {
  override name = "UnbatchableMessageError";
}

/** Encodes one message as MessageDecoder.encodeMessage does: sizes, flag, body, properties. */
export function encodeBatchEntry(e: BatchEntry, id: string): Buffer {
  let user = "";
  for (const [k, v] of Object.entries(e.properties ?? {})) {
    // The separators cannot be escaped in this format: such a message goes through gRPC instead.
    if (/[\u0001\u0002]/.test(k + v)) throw new UnbatchableMessageError(`message property ${JSON.stringify(k)} holds a separator character`);
    user += `${k}${NAME_VALUE}${v}${PROPERTY_END}`;
  }
  const props = Buffer.from(
    `KEYS${NAME_VALUE}${e.key}${PROPERTY_END}TAGS${NAME_VALUE}${e.tag}${PROPERTY_END}UNIQ_KEY${NAME_VALUE}${id}${PROPERTY_END}${user}`,
    "utf8",
  );
  if (props.length > 0x7fff) throw new UnbatchableMessageError(`message properties of ${props.length} bytes exceed 32767`);
  const size = 4 + 4 + 4 + 4 + 4 + e.body.length + 2 + props.length;
  const out = Buffer.allocUnsafe(size);
  let o = out.writeInt32BE(size, 0);
  o = out.writeInt32BE(0, o); // magic code: unused in a batch entry
  o = out.writeInt32BE(0, o); // body CRC: the broker computes it
  o = out.writeInt32BE(0, o); // flag
  o = out.writeInt32BE(e.body.length, o);
  o += e.body.copy(out, o);
  o = out.writeInt16BE(props.length, o);
  props.copy(out, o);
  return out;
}

export class RemotingBatchSender {
  readonly #admin: Admin;
  readonly #brokers = new Map<string, RemotingClient>();
  readonly #routes = new Map<string, Promise<Route>>();
  readonly #credentials;
  readonly #timeoutMs: number;

  constructor(cfg: Config, private readonly log: Logger) {
    this.#credentials = mqCredentials(cfg);
    this.#timeoutMs = cfg.MQ_REQUEST_TIMEOUT_MS;
    this.#admin = new Admin({
      namesrv: cfg.MQ_NAMESRV,
      cluster: cfg.MQ_CLUSTER,
      timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS,
      credentials: this.#credentials,
    });
  }

  /** Sends the messages as one batch to one queue; resolves with their ids (in order) once the broker stored them. */
  async send(topic: string, entries: BatchEntry[]): Promise<string[]> {
    const ids = entries.map(() => MessageIdFactory.create().toString());
    const body = Buffer.concat(entries.map((e, i) => encodeBatchEntry(e, ids[i]!)));
    const q = await this.#pickQueue(topic);
    // SendMessageRequestHeaderV2: the broker decodes SEND_BATCH_MESSAGE with these one-letter names.
    const header: Record<string, string> = {
      // producer group: the gRPC proxy uses the topic too; it only matters for transactions
      a: topic,
      b: topic,
      c: "TBW102", // default topic
      d: "4", // default topic queue count
      e: String(q.queueId),
      f: "0", // sysFlag
      g: String(Date.now()), // born timestamp
      h: "0", // flag
      i: "", // batch properties: none, so that each message keeps its own
      j: "0", // reconsume times
      k: "false", // unit mode
      m: "true", // batch
      n: q.brokerName,
    };
    const request = () => this.#broker(q.addr).request(RequestCode.SEND_BATCH_MESSAGE, header, { body, timeoutMs: this.#timeoutMs });
    try {
      // The broker closes a connection idle for 120 s; a request that met the close is sent once more on
      // a new connection (at worst a duplicate, which the claim absorbs) rather than failing the batch.
      await request().catch((e) => {
        if (e instanceof RemotingError && e.kind === "closed") return request();
        throw e;
      });
    } catch (e) {
      // A broker that is gone or refuses the topic: ask the name server again next time.
      if (!(e instanceof RemotingError && e.kind === "response" && e.code === ResponseCode.MESSAGE_ILLEGAL)) this.#routes.delete(topic);
      throw e;
    }
    return ids;
  }

  close() {
    this.#admin.close();
    for (const c of this.#brokers.values()) c.close();
    this.#brokers.clear();
  }

  #broker(addr: string): RemotingClient {
    let c = this.#brokers.get(addr);
    if (!c) this.#brokers.set(addr, (c = new RemotingClient(addr, { timeoutMs: this.#timeoutMs, credentials: this.#credentials })));
    return c;
  }

  async #pickQueue(topic: string): Promise<Queue> {
    let p = this.#routes.get(topic);
    if (p) {
      const r = await p.catch(() => undefined);
      if (!r || Date.now() - r.fetchedAt > ROUTE_TTL_MS) p = undefined;
    }
    if (!p) {
      p = this.#fetchRoute(topic);
      this.#routes.set(topic, p);
      p.catch(() => this.#routes.get(topic) === p && this.#routes.delete(topic));
    }
    const r = await p;
    // Round robin over every writable queue, as the proxy spreads single sends.
    return r.queues[r.next++ % r.queues.length]!;
  }

  async #fetchRoute(topic: string): Promise<Route> {
    const route: TopicRoute | null = await this.#admin.topicRoute(topic);
    const queues: Queue[] = [];
    for (const qd of route?.queueDatas ?? []) {
      if (!(qd.perm & WRITABLE)) continue;
      const addr = route!.brokerDatas.find((b) => b.brokerName === qd.brokerName)?.brokerAddrs["0"];
      if (!addr) continue;
      for (let queueId = 0; queueId < qd.writeQueueNums; queueId++) queues.push({ brokerName: qd.brokerName, addr, queueId });
    }
    if (!queues.length)
      throw new RemotingError("response", ResponseCode.TOPIC_NOT_EXIST, `no writable queue of ${topic} on a master broker`, "name server");
    this.log.debug("batch send route", { topic, queues: queues.length });
    return { queues, next: Math.floor(Math.random() * queues.length), fetchedAt: Date.now() };
  }
}
