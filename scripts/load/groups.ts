// Temporary consumer groups and topics of one run, made with the admin client provisioning uses and
// removed afterwards.
import { randomBytes } from "node:crypto";
import { mqCredentials, type Config } from "../../lib/config.ts";
import { deprovision, provision, retryPolicyFor, type ProvisionSpec } from "../../lib/provision.ts";
import { Admin } from "../../lib/rocketmq/admin.ts";

export function runId(): string {
  return `load_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
}

export function adminFor(cfg: Config): Admin {
  return new Admin({
    namesrv: cfg.MQ_NAMESRV,
    cluster: cfg.MQ_CLUSTER,
    timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS,
    credentials: mqCredentials(cfg),
  });
}

/**
 * A group of its own on an existing topic, created before anything is sent, with every queue's offset
 * set to the queue's current end: it receives all that is produced from now on and none of the
 * topic's history (TopicResult may hold millions of old results).
 */
export async function createTailGroup(admin: Admin, cfg: Config, group: string, topic: string): Promise<void> {
  const brokers = await admin.brokers(cfg.MQ_CLUSTER);
  await admin.createGroup({ group, retryMaxTimes: cfg.MQ_RETRY_MAX_TIMES, retryPolicy: retryPolicyFor(cfg) });
  for (const b of brokers) {
    const t = await admin.getTopicConfig(b.master, topic);
    if (!t) continue;
    for (let q = 0; q < t.readQueueNums; q++)
      await admin.updateConsumerOffset(b.master, group, topic, q, await admin.maxOffset(b.master, topic, q));
  }
}

/**
 * Deletes a group on a topic that stays (the result topic) for good. The broker's pop checkpoints of
 * the group's last receives come due `invisibleMs` after them and re-create a group deleted before
 * that (measured: the group was back 20-35 s after deletion with a 30 s invisible time), so this
 * waits for them, deletes, and deletes again if the group came back.
 */
export async function removeGroup(admin: Admin, cfg: Config, group: string, lastReceiveAt: number, invisibleMs: number) {
  const due = lastReceiveAt + invisibleMs + 3_000 - performance.now();
  if (lastReceiveAt && due > 0) await Bun.sleep(due);
  const exists = async () => {
    for (const b of await admin.brokers(cfg.MQ_CLUSTER)) if (await admin.getGroupConfig(b.master, group)) return true;
    return false;
  };
  for (let i = 0; i < 5; i++) {
    await admin.deleteGroup(group, cfg.MQ_CLUSTER, true);
    await Bun.sleep(2_000);
    if (!(await exists())) return;
  }
  throw new Error(`group ${group} keeps coming back after deletion`);
}

/** A topic and a group on it (offsets at the earliest message) for mq mode. */
export function tempSpec(cfg: Config, id: string, queues: number): ProvisionSpec {
  return {
    cluster: cfg.MQ_CLUSTER,
    topics: [{ topic: id, queues, perm: 6, messageType: "NORMAL" }],
    groups: [{ group: `${id}_grp`, retryMaxTimes: cfg.MQ_RETRY_MAX_TIMES, retryPolicy: retryPolicyFor(cfg), topics: [id] }],
  };
}

export { deprovision, provision };

/** The end offset of every queue of a topic, over all brokers: snapshot before and after a run. */
export async function maxOffsets(admin: Admin, cfg: Config, topic: string): Promise<number[]> {
  const out: number[] = [];
  for (const b of await admin.brokers(cfg.MQ_CLUSTER)) {
    const t = await admin.getTopicConfig(b.master, topic);
    if (!t) continue;
    for (let q = 0; q < t.readQueueNums; q++) out.push(await admin.maxOffset(b.master, topic, q));
  }
  return out;
}

/** Messages a run put in each queue: how the producer (and the proxy) spread them. */
export const spread = (before: number[], after: number[]) => after.map((a, i) => a - (before[i] ?? 0));
