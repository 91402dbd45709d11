// The workers' backlog as the broker sees it: per group and topic, the messages stored but not yet
// received (each queue's max offset minus the group's committed offset; with pop consumption through
// the proxy the offset moves when a message is received, so messages in flight are not counted).
// Read on scrape with the remoting admin client (GET_CONSUME_STATS on every master broker), at most
// once per LAG_CACHE_MS however often Prometheus (or several) scrape.
import { mqCredentials, type Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { deadLetterGroup, deadLetterTopic } from "../provision.ts";
import { Admin } from "../rocketmq/admin.ts";
import { metrics, setLagReader } from "./metrics.ts";

/** How long one reading is served: a scrape every few seconds costs the brokers one request each per 5 s. */
export const LAG_CACHE_MS = 5_000;

export interface LagRow {
  group: string;
  topic: string;
  lag: number;
}

/** What is read: the workers' group on the request topic and its pop retry topics, and the dead-letter reader. */
export function lagSources(cfg: Config): { group: string; topics: string[] }[] {
  const g = cfg.MQ_GROUP_AGENT;
  const t = cfg.MQ_TOPIC_REQUEST;
  return [
    // Pop retry topics: `%RETRY%<group>_<topic>` (the 5.3.3 default) or `+` with enableRetryTopicV2.
    { group: g, topics: [t, `%RETRY%${g}_${t}`, `%RETRY%${g}+${t}`] },
    { group: deadLetterGroup(g), topics: [deadLetterTopic(g)] },
  ];
}

/** Reads the lag of every source from every master broker of the cluster, summed over queues. */
export async function readLag(admin: Admin, sources: { group: string; topics: string[] }[]): Promise<LagRow[]> {
  const sums = new Map<string, LagRow>();
  for (const b of await admin.brokers()) {
    for (const s of sources) {
      for (const q of await admin.consumeStats(b.master, s.group, s.topics)) {
        const k = `${s.group}\u0000${q.topic}`;
        const row = sums.get(k) ?? { group: s.group, topic: q.topic, lag: 0 };
        row.lag += Math.max(0, q.brokerOffset - q.consumerOffset);
        sums.set(k, row);
      }
    }
  }
  return [...sums.values()];
}

/** Serves the lag gauge of this process's registry from the brokers; returns the close. No-op without metrics. */
export function exposeConsumerLag(cfg: Config, log: Logger): () => void {
  const M = metrics();
  if (!M) return () => {};
  const admin = new Admin({ namesrv: cfg.MQ_NAMESRV, cluster: cfg.MQ_CLUSTER, timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS, credentials: mqCredentials(cfg) });
  const sources = lagSources(cfg);
  let last: { at: number; rows: LagRow[] | undefined } | undefined;
  let reading: Promise<LagRow[] | undefined> | undefined;
  let warned = false;
  const read = () =>
    (reading ??= readLag(admin, sources)
      .then(
        (rows) => ((warned = false), rows),
        (e) => {
          M.lagErrors.inc();
          if (!warned) log.warn("consumer lag not read from the brokers", { error: e as Error });
          warned = true;
          return undefined;
        },
      )
      .then((rows) => ((last = { at: performance.now(), rows }), rows))
      .finally(() => (reading = undefined)));
  setLagReader(async (gauge) => {
    const rows = last && performance.now() - last.at < LAG_CACHE_MS ? last.rows : await read();
    gauge.reset();
    // A failed read shows no value rather than a stale one; agent_rocketmq_consumer_lag_errors_total counts it.
    for (const r of rows ?? []) gauge.labels(r.group, r.topic).set(r.lag);
  });
  return () => {
    setLagReader(undefined);
    admin.close();
  };
}
