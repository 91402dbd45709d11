// Provisioning: the topics and consumer groups this system needs, created idempotently over the remoting
// protocol. `plan` reads the current state and lists what differs; `apply` makes the changes. Both the CLI
// (scripts/provision.ts) and the tests' namespaces (tests/helpers.ts) use `provision`.
import type { Config } from "./config.ts";
import {
  Admin,
  AdminError,
  type BrokerInfo,
  type GroupConfig,
  type GroupSpec,
  type RetryPolicy,
  type TopicConfig,
  type TopicSpec,
  groupConfigFor,
} from "./rocketmq/admin.ts";

export interface GroupProvision extends GroupSpec {
  /** Topics the group consumes: new groups get their offsets set to the earliest message of each queue. */
  topics: string[];
}

export interface ProvisionSpec {
  cluster: string;
  topics: TopicSpec[];
  groups: GroupProvision[];
}

export type ItemStatus = "created" | "changed" | "unchanged" | "deleted" | "absent";

export interface ReportItem {
  kind: "topic" | "group" | "offsets";
  name: string;
  broker: string;
  status: ItemStatus;
  /** what differs (changed), what was made (created) or set (offsets) */
  changes: string[];
}

export interface Report {
  dryRun: boolean;
  cluster: string;
  items: ReportItem[];
  /** true when something was (or, in a dry run, would be) changed */
  changed: boolean;
}

/**
 * Retry policy of the workers' group: EXPONENTIAL, starting at RETRY_BASE_MS (>= 10 s) and doubling up to
 * 2 h, the same curve as the worker's own retry delays. It is what a gRPC PushConsumer of the group gets as
 * its backoff; a SimpleConsumer's redelivery time is its invisible duration, so for the workers the policy
 * only needs to agree with the worker. CUSTOMIZED (the broker's default, 1s 5s 10s 30s 1m ... 2h) would give
 * retries sooner than RocketMQ's 10 s minimum invisible time and than MAX_ATTEMPTS' spacing.
 */
export function retryPolicyFor(cfg: Pick<Config, "RETRY_BASE_MS">): RetryPolicy {
  return {
    type: "EXPONENTIAL",
    exponentialRetryPolicy: { initial: cfg.RETRY_BASE_MS, max: 2 * 3600_000, multiplier: 2 },
  };
}

export interface SpecOptions {
  queues?: number;
  cluster?: string;
  /** extra consumer groups, subscribed to the result topic (downstream consumers of results) */
  extraGroups?: string[];
}

/** Where RocketMQ moves a group's messages after retryMaxTimes + 1 deliveries. */
export const deadLetterTopic = (group: string) => `%DLQ%${group}`;
/**
 * The group that reads a group's dead-letter topic. Not the group itself: the proxy dead-letters any
 * message it hands out whose reconsume count reached the reading group's retryMaxTimes + 1, and a
 * dead letter carries its count, so the owning group would send it straight back to its own DLQ, in a
 * loop inside the broker (seen: 1770 times a minute). This group allows more deliveries than that.
 */
export const deadLetterGroup = (group: string) => `${group}-dlq`;

/**
 * Delayed tasks' topic. RocketMQ 5 gives each topic one message type and the gRPC proxy refuses a
 * timer message on a NORMAL topic (and a normal one on a DELAY topic); a MIXED topic needs the broker
 * setting enableMixedMessageType (off by default, AdminBrokerProcessor refuses it otherwise). So
 * delayed messages get a DELAY topic of their own, and the request topic stays NORMAL, as the
 * original's producers and consumers expect. When due, a worker forwards each to the request topic
 * (lib/worker/delayed.ts).
 */
export const delayTopic = (requestTopic: string) => `${requestTopic}-delay`;
/** The group that reads the delay topic (workers forward what it delivers). */
export const delayGroup = (group: string) => `${group}-delay`;
/**
 * How much earlier than run_at a delayed message is given to the broker's timer. The 5.3.3 timer
 * rounds a delivery time down to its slot (timerPrecisionMs, 1 s by default) and hands a slot's
 * messages out once the slot has passed (measured here: ~0.15 s after its end), so a message sent
 * for run_at arrived 0.15-1.15 s after it. Sent a slot early it arrives up to ~0.85 s before run_at,
 * and the worker holds it until run_at (lib/worker/delayed.ts): late by the forward alone.
 */
export const TIMER_LEAD_MS = 1_000;

/**
 * The request and result topics, the workers' group (plus extra groups on the result topic), and the
 * workers' dead-letter topic with the group that reads it. The broker would create the topic itself on
 * the first dead letter; creating it here (offsets at the start) lets workers read it from the start,
 * so a task whose message RocketMQ gave up on is marked failed instead of left waiting.
 */
export function specFromConfig(cfg: Config, o: SpecOptions = {}): ProvisionSpec {
  const queues = o.queues ?? cfg.MQ_QUEUES;
  const retry = { retryMaxTimes: cfg.MQ_RETRY_MAX_TIMES, retryPolicy: retryPolicyFor(cfg) };
  const dlq = deadLetterTopic(cfg.MQ_GROUP_AGENT);
  const topics: TopicSpec[] = [
    { topic: cfg.MQ_TOPIC_REQUEST, queues, perm: 6, messageType: "NORMAL" },
    { topic: cfg.MQ_TOPIC_RESULT, queues, perm: 6, messageType: "NORMAL" },
    { topic: dlq, queues: 1, perm: 6, messageType: "NORMAL" },
    { topic: delayTopic(cfg.MQ_TOPIC_REQUEST), queues, perm: 6, messageType: "DELAY" },
  ];
  const groups: GroupProvision[] = [
    { group: cfg.MQ_GROUP_AGENT, ...retry, topics: [cfg.MQ_TOPIC_REQUEST] },
    { group: deadLetterGroup(cfg.MQ_GROUP_AGENT), retryMaxTimes: cfg.MQ_RETRY_MAX_TIMES + 16, retryPolicy: retry.retryPolicy, topics: [dlq] },
    { group: delayGroup(cfg.MQ_GROUP_AGENT), ...retry, topics: [delayTopic(cfg.MQ_TOPIC_REQUEST)] },
  ];
  for (const g of o.extraGroups ?? [])
    if (!groups.some((x) => x.group === g)) groups.push({ group: g, ...retry, topics: [cfg.MQ_TOPIC_RESULT] });
  return { cluster: o.cluster ?? cfg.MQ_CLUSTER, topics, groups };
}

// ------------------------------------------------------------------------------------------------ plan

type Step =
  | { kind: "topic"; broker: BrokerInfo; spec: TopicSpec; item: ReportItem }
  | { kind: "group"; broker: BrokerInfo; spec: GroupSpec; current: GroupConfig | null; item: ReportItem }
  | { kind: "offsets"; broker: BrokerInfo; group: string; topic: string; queues: number; item: ReportItem };

export interface Plan {
  cluster: string;
  brokers: BrokerInfo[];
  steps: Step[];
}

// What TopicValidator and the gRPC proxy accept for our names; %DLQ% is the broker's own dead-letter prefix.
const NAME = /^(%DLQ%)?[A-Za-z0-9_-]{1,120}$/;

/** Reads the cluster's state and lists, per master broker, what provisioning would create or change. */
export async function plan(admin: Admin, spec: ProvisionSpec): Promise<Plan> {
  for (const n of [...spec.topics.map((t) => t.topic), ...spec.groups.map((g) => g.group)])
    if (!NAME.test(n)) throw new AdminError(`"${n}" is not a valid topic or group name (letters, digits, _ and -)`);
  const brokers = await admin.brokers(spec.cluster);
  const steps: Step[] = [];
  const queuesOn = new Map<string, number>(); // broker/topic -> read queues after apply
  for (const b of brokers) {
    for (const t of spec.topics) {
      const cur = await admin.getTopicConfig(b.master, t.topic);
      const item: ReportItem = { kind: "topic", name: t.topic, broker: b.name, status: "unchanged", changes: [] };
      if (!cur) {
        item.status = "created";
        item.changes.push(`${t.queues} queues`, `perm ${t.perm ?? 6}`, `message.type ${t.messageType ?? "NORMAL"}`);
      } else {
        item.changes = topicDiff(cur, t);
        if (item.changes.length) item.status = "changed";
        if (cur.readQueueNums > t.queues || cur.writeQueueNums > t.queues)
          throw new AdminError(
            `topic ${t.topic} on ${b.name} has ${cur.readQueueNums} queues, more than the ${t.queues} asked for; ` +
              `refusing to shrink it (messages in the removed queues would no longer be read)`,
          );
      }
      queuesOn.set(`${b.name}/${t.topic}`, t.queues);
      steps.push({ kind: "topic", broker: b, spec: t, item });
    }
    for (const g of spec.groups) {
      const cur = await admin.getGroupConfig(b.master, g.group);
      const item: ReportItem = { kind: "group", name: g.group, broker: b.name, status: "unchanged", changes: [] };
      if (!cur) {
        item.status = "created";
        item.changes.push(`retryMaxTimes ${g.retryMaxTimes}`, `retry ${describePolicy(g.retryPolicy)}`);
      } else {
        item.changes = groupDiff(cur, g);
        if (item.changes.length) item.status = "changed";
      }
      steps.push({ kind: "group", broker: b, spec: g, current: cur, item });
    }
    for (const g of spec.groups)
      for (const topic of g.topics) {
        const queues = queuesOn.get(`${b.name}/${topic}`) ?? (await admin.getTopicConfig(b.master, topic))?.readQueueNums;
        if (!queues) throw new AdminError(`group ${g.group} subscribes to ${topic}, which does not exist on ${b.name}`);
        const missing = await queuesWithoutOffset(admin, b.master, g.group, topic, queues);
        const item: ReportItem = {
          kind: "offsets",
          name: `${g.group}/${topic}`,
          broker: b.name,
          status: missing.length ? "created" : "unchanged",
          changes: missing.length ? [`${missing.length} of ${queues} queues start at the earliest message`] : [],
        };
        steps.push({ kind: "offsets", broker: b, group: g.group, topic, queues, item });
      }
  }
  return { cluster: spec.cluster, brokers, steps };
}

/** Makes the plan's changes; offsets are re-read here, so a queue that got an offset meanwhile keeps it. */
export async function apply(admin: Admin, p: Plan): Promise<void> {
  const touched = new Map<string, { brokers: string[]; queues: number }>();
  for (const s of p.steps) {
    if (s.kind === "topic" && s.item.status !== "unchanged") {
      await admin.createTopicOn(s.broker.master, s.spec);
      const t = touched.get(s.spec.topic) ?? { brokers: [], queues: s.spec.queues };
      t.brokers.push(s.broker.name);
      touched.set(s.spec.topic, t);
    } else if (s.kind === "group" && s.item.status !== "unchanged") {
      await admin.putGroupConfig(s.broker.master, groupConfigFor(s.spec, s.current));
    } else if (s.kind === "offsets" && s.item.status !== "unchanged") {
      const missing = await queuesWithoutOffset(admin, s.broker.master, s.group, s.topic, s.queues);
      for (const q of missing) {
        const min = await admin.minOffset(s.broker.master, s.topic, q);
        await admin.updateConsumerOffset(s.broker.master, s.group, s.topic, q, min);
      }
      s.item.changes = [`${missing.length} of ${s.queues} queues set to their earliest offset`];
      if (!missing.length) s.item.status = "unchanged";
    }
  }
  // Producers through the gRPC proxy look the route up at the name server: make sure it is there.
  for (const [topic, t] of touched) await admin.waitForRoute(topic, t.brokers, t.queues);
}

/** Plans and (unless dryRun) applies; returns one report item per topic, group and offsets per broker. */
export async function provision(admin: Admin, spec: ProvisionSpec, o: { dryRun?: boolean } = {}): Promise<Report> {
  const p = await plan(admin, spec);
  if (!o.dryRun) await apply(admin, p);
  const items = p.steps.map((s) => s.item);
  return { dryRun: !!o.dryRun, cluster: spec.cluster, items, changed: items.some((i) => i.status !== "unchanged") };
}

/** Deletes the spec's groups (with their offsets) and topics on every master broker and the name server. */
export async function deprovision(admin: Admin, spec: ProvisionSpec, o: { dryRun?: boolean } = {}): Promise<Report> {
  const brokers = await admin.brokers(spec.cluster);
  const items: ReportItem[] = [];
  for (const g of spec.groups) {
    const present = [];
    for (const b of brokers) if (await admin.getGroupConfig(b.master, g.group)) present.push(b.name);
    if (present.length && !o.dryRun) await admin.deleteGroup(g.group, spec.cluster, true);
    items.push({ kind: "group", name: g.group, broker: brokers.map((b) => b.name).join(","), status: present.length ? "deleted" : "absent", changes: [] });
  }
  for (const t of spec.topics) {
    const present = [];
    for (const b of brokers) if (await admin.getTopicConfig(b.master, t.topic)) present.push(b.name);
    const routed = (await admin.topicRoute(t.topic)) !== null;
    if ((present.length || routed) && !o.dryRun) await admin.deleteTopic(t.topic, spec.cluster);
    items.push({ kind: "topic", name: t.topic, broker: brokers.map((b) => b.name).join(","), status: present.length || routed ? "deleted" : "absent", changes: [] });
  }
  return { dryRun: !!o.dryRun, cluster: spec.cluster, items, changed: items.some((i) => i.status === "deleted") };
}

/** One line per item, e.g. "topic TopicTest @broker-a: created (16 queues, perm 6, message.type NORMAL)". */
export function formatReport(r: Report): string[] {
  const lines = r.items.map((i) => {
    const status = r.dryRun && i.status !== "unchanged" && i.status !== "absent" ? `would be ${i.status}` : i.status;
    return `${i.kind} ${i.name} @${i.broker}: ${status}${i.changes.length ? ` (${i.changes.join(", ")})` : ""}`;
  });
  lines.push(r.changed ? (r.dryRun ? "dry run: nothing was changed" : "done") : "nothing changed");
  return lines;
}

// ----------------------------------------------------------------------------------------------- diffs

async function queuesWithoutOffset(admin: Admin, broker: string, group: string, topic: string, queues: number) {
  const missing: number[] = [];
  for (let q = 0; q < queues; q++) if ((await admin.queryConsumerOffset(broker, group, topic, q)) === null) missing.push(q);
  return missing;
}

function topicDiff(cur: TopicConfig, want: TopicSpec): string[] {
  const d: string[] = [];
  if (cur.readQueueNums !== want.queues) d.push(`readQueueNums ${cur.readQueueNums} -> ${want.queues}`);
  if (cur.writeQueueNums !== want.queues) d.push(`writeQueueNums ${cur.writeQueueNums} -> ${want.queues}`);
  if (cur.perm !== (want.perm ?? 6)) d.push(`perm ${cur.perm} -> ${want.perm ?? 6}`);
  const type = cur.attributes?.["message.type"] ?? cur.attributes?.["+message.type"];
  if (type !== (want.messageType ?? "NORMAL")) d.push(`message.type ${type ?? "(unset)"} -> ${want.messageType ?? "NORMAL"}`);
  return d;
}

function groupDiff(cur: GroupConfig, want: GroupSpec): string[] {
  const d: string[] = [];
  if (cur.consumeEnable === false) d.push("consumeEnable false -> true");
  if (!!cur.consumeMessageOrderly !== !!want.consumeMessageOrderly)
    d.push(`consumeMessageOrderly ${!!cur.consumeMessageOrderly} -> ${!!want.consumeMessageOrderly}`);
  if (cur.retryMaxTimes !== want.retryMaxTimes) d.push(`retryMaxTimes ${cur.retryMaxTimes} -> ${want.retryMaxTimes}`);
  const have = describePolicy(cur.groupRetryPolicy);
  const wantP = describePolicy(want.retryPolicy);
  if (have !== wantP) d.push(`retry ${have} -> ${wantP}`);
  return d;
}

function describePolicy(p: GroupConfig["groupRetryPolicy"] | undefined): string {
  if (!p) return "CUSTOMIZED(default)";
  if (p.type === "EXPONENTIAL") {
    const e = (p as { exponentialRetryPolicy?: { initial?: number; max?: number; multiplier?: number } }).exponentialRetryPolicy;
    return `EXPONENTIAL(initial ${e?.initial ?? 5000} ms, max ${e?.max ?? 7_200_000} ms, x${e?.multiplier ?? 2})`;
  }
  const c = (p as { customizedRetryPolicy?: { next?: number[] } }).customizedRetryPolicy;
  return c?.next ? `CUSTOMIZED(${c.next.join(" ")} ms)` : "CUSTOMIZED(default)";
}
