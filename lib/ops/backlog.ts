// The workers' backlog as the broker sees it: per queue of the request topic, the messages stored
// past the workers' group's committed offset (max offset - consumer offset), summed over every
// queue of every broker. Read over the remoting protocol with the admin client (lib/rocketmq/admin.ts):
// a few requests per queue, so callers cache it (lib/http/dashboard.ts) rather than ask per view.
// Messages received but not yet acked are past the offset already: this counts what no worker holds.
import type { Config } from "../config.ts";
import { mqCredentials } from "../config.ts";
import { Admin } from "../rocketmq/admin.ts";

export interface Backlog {
  /** messages no worker has received yet */
  messages: number;
  queues: number;
}

export async function readBacklog(admin: Admin, topic: string, group: string): Promise<Backlog> {
  const route = await admin.topicRoute(topic);
  if (!route) throw new Error(`topic ${topic} has no route (not provisioned?)`);
  const masters = new Map(route.brokerDatas.map((b) => [b.brokerName, b.brokerAddrs["0"]]));
  const lags = await Promise.all(
    route.queueDatas.flatMap((q) => {
      const addr = masters.get(q.brokerName);
      if (!addr) return [];
      return Array.from({ length: q.readQueueNums }, async (_, queueId) => {
        const [max, committed] = await Promise.all([
          admin.maxOffset(addr, topic, queueId),
          admin.queryConsumerOffset(addr, group, topic, queueId),
        ]);
        // No committed offset yet: the group starts from the earliest message (lib/provision.ts).
        const from = committed ?? (await admin.minOffset(addr, topic, queueId));
        return Math.max(0, max - from);
      });
    }),
  );
  return { messages: lags.reduce((a, b) => a + b, 0), queues: lags.length };
}

export function adminFor(cfg: Config): Admin {
  return new Admin({ namesrv: cfg.MQ_NAMESRV, cluster: cfg.MQ_CLUSTER, timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS, credentials: mqCredentials(cfg) });
}
