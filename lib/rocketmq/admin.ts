// Admin calls over the remoting protocol: cluster info and routes from the name server; topics, groups and
// consumer offsets on each master broker. Every call has a timeout; a refusal throws RemotingError with the
// broker's code and remark.
import { RequestCode, ResponseCode } from "./codes.ts";
import { type Credentials, RemotingClient, RemotingError, parseLooseJson } from "./remoting.ts";

export interface AdminOptions {
  /** Name server address(es), "host:port[;host:port]". */
  namesrv: string;
  cluster?: string;
  timeoutMs?: number;
  credentials?: Credentials;
}

export interface BrokerInfo {
  name: string;
  /** address of brokerId 0 */
  master: string;
  addrs: Record<string, string>;
}

export type MessageType = "NORMAL" | "FIFO" | "DELAY" | "TRANSACTION";

export interface TopicSpec {
  topic: string;
  queues: number;
  /** 6 = read + write */
  perm?: number;
  messageType?: MessageType;
}

export interface TopicConfig {
  topicName: string;
  readQueueNums: number;
  writeQueueNums: number;
  perm: number;
  topicFilterType?: string;
  topicSysFlag?: number;
  order?: boolean;
  attributes?: Record<string, string>;
}

export interface TopicRoute {
  queueDatas: { brokerName: string; readQueueNums: number; writeQueueNums: number; perm: number }[];
  brokerDatas: { brokerName: string; cluster: string; brokerAddrs: Record<string, string> }[];
}

export type RetryPolicy =
  | { type: "EXPONENTIAL"; exponentialRetryPolicy: { initial: number; max: number; multiplier: number } }
  | { type: "CUSTOMIZED"; customizedRetryPolicy: { next: number[] } };

/** The fields of the broker's SubscriptionGroupConfig that provisioning manages; others pass through. */
export interface GroupConfig {
  groupName: string;
  consumeEnable?: boolean;
  consumeMessageOrderly?: boolean;
  retryMaxTimes?: number;
  groupRetryPolicy?: RetryPolicy | { type: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface GroupSpec {
  group: string;
  retryMaxTimes: number;
  retryPolicy: RetryPolicy;
  consumeMessageOrderly?: boolean;
}

const text = (b?: Uint8Array) => (b ? new TextDecoder().decode(b) : "");
const json = (b?: Uint8Array) => parseLooseJson(text(b));

export class Admin {
  readonly cluster: string;
  readonly timeoutMs: number;
  private readonly namesrvs: string[];
  private readonly clients = new Map<string, RemotingClient>();

  constructor(private readonly opts: AdminOptions) {
    this.namesrvs = opts.namesrv.split(";").map((s) => s.trim()).filter(Boolean);
    if (!this.namesrvs.length) throw new RangeError("no name server address given");
    this.cluster = opts.cluster ?? "DefaultCluster";
    this.timeoutMs = opts.timeoutMs ?? 3000;
  }

  private client(addr: string): RemotingClient {
    let c = this.clients.get(addr);
    if (!c) {
      c = new RemotingClient(addr, { timeoutMs: this.timeoutMs, credentials: this.opts.credentials });
      this.clients.set(addr, c);
    }
    return c;
  }

  /** Asks each name server in turn until one answers (a server's refusal is not retried elsewhere). */
  private async namesrv(code: number, ext: Record<string, string> = {}, accept?: number[]) {
    let last: unknown;
    for (const addr of this.namesrvs) {
      try {
        return await this.client(addr).request(code, ext, { accept });
      } catch (e) {
        if (e instanceof RemotingError && e.kind === "response") throw e;
        last = e;
      }
    }
    throw last;
  }

  // ------------------------------------------------------------------------------------- name server

  /** Raw GET_BROKER_CLUSTER_INFO (106); its body is fastjson with unquoted numeric keys. */
  async clusterInfo(): Promise<{
    brokerAddrTable: Record<string, { brokerName: string; cluster: string; brokerAddrs: Record<string, string> }>;
    clusterAddrTable: Record<string, string[]>;
  }> {
    const r = await this.namesrv(RequestCode.GET_BROKER_CLUSTER_INFO);
    const info = json(r.body) as Awaited<ReturnType<Admin["clusterInfo"]>>;
    return { brokerAddrTable: info?.brokerAddrTable ?? {}, clusterAddrTable: info?.clusterAddrTable ?? {} };
  }

  /** Brokers of a cluster with their master (brokerId 0) address; throws AdminError if none. */
  async brokers(cluster = this.cluster): Promise<BrokerInfo[]> {
    const info = await this.clusterInfo();
    const names = info.clusterAddrTable[cluster];
    if (!names) {
      const known = Object.keys(info.clusterAddrTable);
      throw new AdminError(
        `cluster "${cluster}" is unknown to the name server (known: ${known.length ? known.join(", ") : "none"})`,
      );
    }
    const out: BrokerInfo[] = [];
    const noMaster: string[] = [];
    for (const name of names) {
      const addrs = info.brokerAddrTable[name]?.brokerAddrs ?? {};
      const master = addrs["0"];
      if (master) out.push({ name, master, addrs });
      else noMaster.push(name);
    }
    if (!out.length)
      throw new AdminError(
        `cluster "${cluster}" has no master broker${noMaster.length ? ` (brokers without a master: ${noMaster.join(", ")})` : ""}`,
      );
    return out;
  }

  /** GET_ROUTEINFO_BY_TOPIC (105); null when the name server knows no route for the topic. */
  async topicRoute(topic: string): Promise<TopicRoute | null> {
    const r = await this.namesrv(
      RequestCode.GET_ROUTEINFO_BY_TOPIC,
      { topic, acceptStandardJsonOnly: "true" },
      [ResponseCode.SUCCESS, ResponseCode.TOPIC_NOT_EXIST],
    );
    if (r.code === ResponseCode.TOPIC_NOT_EXIST) return null;
    return json(r.body) as TopicRoute;
  }

  // ----------------------------------------------------------------------------------------- topics

  /** GET_TOPIC_CONFIG (351) from one broker; null when it has no such topic. */
  async getTopicConfig(brokerAddr: string, topic: string): Promise<TopicConfig | null> {
    const r = await this.client(brokerAddr).request(RequestCode.GET_TOPIC_CONFIG, { topic, lo: "false" }, {
      accept: [ResponseCode.SUCCESS, ResponseCode.TOPIC_NOT_EXIST],
    });
    if (r.code === ResponseCode.TOPIC_NOT_EXIST) return null;
    const body = json(r.body) as { topicConfig?: TopicConfig } & TopicConfig;
    return body.topicConfig ?? body; // TopicConfigAndQueueMapping extends TopicConfig
  }

  /** UPDATE_AND_CREATE_TOPIC (17) on one broker (creates or replaces its config). */
  async createTopicOn(brokerAddr: string, spec: TopicSpec): Promise<void> {
    const q = String(spec.queues);
    await this.client(brokerAddr).request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
      topic: spec.topic,
      defaultTopic: "TBW102",
      readQueueNums: q,
      writeQueueNums: q,
      perm: String(spec.perm ?? 6),
      topicFilterType: "SINGLE_TAG",
      topicSysFlag: "0",
      order: "false",
      attributes: `+message.type=${spec.messageType ?? "NORMAL"}`,
    });
  }

  /** Creates (or updates) the topic on every master broker of the cluster. */
  async createTopic(spec: TopicSpec, cluster = this.cluster): Promise<void> {
    for (const b of await this.brokers(cluster)) await this.createTopicOn(b.master, spec);
  }

  /** DELETE_TOPIC_IN_BROKER (215) on every master, then DELETE_TOPIC_IN_NAMESRV (216). */
  async deleteTopic(topic: string, cluster = this.cluster): Promise<void> {
    for (const b of await this.brokers(cluster))
      await this.client(b.master).request(RequestCode.DELETE_TOPIC_IN_BROKER, { topic });
    await this.namesrv(RequestCode.DELETE_TOPIC_IN_NAMESRV, { topic, clusterName: cluster });
  }

  /**
   * Waits until the name server's route lists `queues` readable queues of the topic on every given broker.
   * Creating a topic registers it with the name server synchronously, so this normally returns at once.
   */
  async waitForRoute(topic: string, brokerNames: string[], queues: number, timeoutMs = this.timeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const route = await this.topicRoute(topic);
      const ok = brokerNames.every((n) => route?.queueDatas.some((q) => q.brokerName === n && q.readQueueNums === queues));
      if (ok) return;
      if (Date.now() > deadline)
        throw new AdminError(`topic ${topic}: the name server does not show ${queues} queues on ${brokerNames.join(", ")} yet`);
      await Bun.sleep(100);
    }
  }

  // ----------------------------------------------------------------------------------------- groups

  /**
   * One group's config on one broker, read with GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), or null.
   * Not GET_SUBSCRIPTIONGROUP_CONFIG (352): that creates the group when autoCreateSubscriptionGroup is on.
   */
  async getGroupConfig(brokerAddr: string, group: string): Promise<GroupConfig | null> {
    const r = await this.client(brokerAddr).request(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG);
    const all = json(r.body) as { subscriptionGroupTable?: Record<string, GroupConfig> };
    return all.subscriptionGroupTable?.[group] ?? null;
  }

  /** UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): the body replaces the whole config. */
  async putGroupConfig(brokerAddr: string, config: GroupConfig): Promise<void> {
    await this.client(brokerAddr).request(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, {}, {
      body: new TextEncoder().encode(JSON.stringify(config)),
    });
  }

  /** Creates or updates a group on every master, keeping settings it does not manage. */
  async createGroup(spec: GroupSpec, cluster = this.cluster): Promise<void> {
    for (const b of await this.brokers(cluster)) {
      const current = await this.getGroupConfig(b.master, spec.group);
      await this.putGroupConfig(b.master, groupConfigFor(spec, current));
    }
  }

  /** DELETE_SUBSCRIPTIONGROUP (207) on every master; cleanOffset also drops its committed offsets. */
  async deleteGroup(group: string, cluster = this.cluster, cleanOffset = true): Promise<void> {
    for (const b of await this.brokers(cluster))
      await this.client(b.master).request(RequestCode.DELETE_SUBSCRIPTIONGROUP, {
        groupName: group,
        cleanOffset: String(cleanOffset),
      });
  }

  // ---------------------------------------------------------------------------------------- offsets

  /** QUERY_CONSUMER_OFFSET (14) with setZeroIfNotFound=false: the committed offset, or null if none. */
  async queryConsumerOffset(brokerAddr: string, group: string, topic: string, queueId: number): Promise<number | null> {
    const r = await this.client(brokerAddr).request(
      RequestCode.QUERY_CONSUMER_OFFSET,
      { consumerGroup: group, topic, queueId: String(queueId), setZeroIfNotFound: "false" },
      { accept: [ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND] },
    );
    return r.code === ResponseCode.QUERY_NOT_FOUND ? null : Number(r.extFields?.offset);
  }

  /** UPDATE_CONSUMER_OFFSET (15). The broker requires the group and the topic to exist. */
  async updateConsumerOffset(brokerAddr: string, group: string, topic: string, queueId: number, offset: number) {
    await this.client(brokerAddr).request(RequestCode.UPDATE_CONSUMER_OFFSET, {
      consumerGroup: group,
      topic,
      queueId: String(queueId),
      commitOffset: String(offset),
    });
  }

  /** GET_MIN_OFFSET (31): the oldest offset still stored in a queue. */
  async minOffset(brokerAddr: string, topic: string, queueId: number): Promise<number> {
    const r = await this.client(brokerAddr).request(RequestCode.GET_MIN_OFFSET, { topic, queueId: String(queueId) });
    return Number(r.extFields?.offset);
  }

  /** GET_MAX_OFFSET (30): the offset the next message of a queue will get. */
  async maxOffset(brokerAddr: string, topic: string, queueId: number): Promise<number> {
    const r = await this.client(brokerAddr).request(RequestCode.GET_MAX_OFFSET, {
      topic,
      queueId: String(queueId),
      committed: "true",
    });
    return Number(r.extFields?.offset);
  }

  /**
   * GET_CONSUME_STATS (208) on one broker: per queue of each topic in `topics` (those the broker does not
   * have are skipped), the queue's max offset and the group's committed offset. With a topic list the
   * broker skips its subscription check (pop consumers through the proxy need none).
   */
  async consumeStats(brokerAddr: string, group: string, topics: string[]): Promise<QueueOffsets[]> {
    const r = await this.client(brokerAddr).request(RequestCode.GET_CONSUME_STATS, {
      consumerGroup: group,
      topicList: topics.map((t) => `${t};`).join(""),
    });
    return parseConsumeStats(text(r.body));
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/** A refusal or inconsistency found by provisioning itself (not a broker response). */
export class AdminError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AdminError";
  }
}

/** The config to send: the current one (if any) with the managed fields replaced. */
export function groupConfigFor(spec: GroupSpec, current: GroupConfig | null): GroupConfig {
  return {
    ...(current ?? {}),
    groupName: spec.group,
    consumeEnable: true,
    consumeMessageOrderly: spec.consumeMessageOrderly ?? false,
    retryMaxTimes: spec.retryMaxTimes,
    groupRetryPolicy: spec.retryPolicy,
  };
}

export interface QueueOffsets {
  topic: string;
  brokerName: string;
  queueId: number;
  brokerOffset: number;
  consumerOffset: number;
}

/**
 * ConsumeStats as the broker writes it (fastjson): `{"offsetTable":{{"brokerName":..,"queueId":..,"topic":..}:
 * {"brokerOffset":..,"consumerOffset":..,..},..},"consumeTps":..}`. Its map keys are objects, which
 * JSON does not allow, so each key:value pair of flat objects is read on its own.
 */
export function parseConsumeStats(body: string): QueueOffsets[] {
  const out: QueueOffsets[] = [];
  for (const m of body.matchAll(/(\{[^{}]*\})\s*:\s*(\{[^{}]*\})/g)) {
    const key = parseLooseJson(m[1]!) as { topic?: string; brokerName?: string; queueId?: number };
    const val = parseLooseJson(m[2]!) as { brokerOffset?: number; consumerOffset?: number };
    if (typeof key?.topic !== "string" || val?.brokerOffset === undefined) continue;
    out.push({
      topic: key.topic,
      brokerName: String(key.brokerName ?? ""),
      queueId: Number(key.queueId),
      brokerOffset: Number(val.brokerOffset),
      consumerOffset: Number(val.consumerOffset ?? 0),
    });
  }
  return out;
}
