// mq mode: the ceiling of the message path alone in the same setting. The same Producer wrapper the API
// uses sends to a temporary topic; a SimpleConsumer (batch receive, several receive calls in parallel)
// receives and acks. No HTTP, no Redis. submit = send latency; e2e = send answered -> received.
import type { Config } from "../../lib/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { Publisher } from "../../lib/mq.ts";
import type { LoadOptions } from "./args.ts";
import { runAndWait } from "./driver.ts";
import { adminFor, deprovision, maxOffsets, provision, runId, spread, tempSpec } from "./groups.ts";
import { startReceiver } from "./receiver.ts";
import { Tracker, type Summary } from "./tracker.ts";

const TAG = "LoadTest";

export async function runMq(cfg: Config, o: LoadOptions): Promise<Summary> {
  const admin = adminFor(cfg);
  const id = runId();
  const spec = tempSpec(cfg, id, o.queues);
  const topic = spec.topics[0]!.topic;
  const group = spec.groups[0]!.group;
  const publisher = new Publisher(cfg, silentLogger, [topic]);
  try {
    await provision(admin, spec);
    await publisher.start();
    const t = new Tracker();
    const receiver = await startReceiver(cfg, group, topic, TAG, o.receivers, (m, at) => {
      const key = m.keys[0];
      if (key) t.finish(key, "done", at);
    });
    const content = "x".repeat(o.contentBytes);
    await runAndWait(t, o, receiver, async (i) => {
      const key = `${id}-${i}`;
      const body = Buffer.from(JSON.stringify({ task_id: key, user_id: `load-${i % 1000}`, payload: content }), "utf8");
      const sentAt = performance.now();
      try {
        await publisher.send({ topic, tag: TAG, key, body });
        t.accept(key, sentAt);
      } catch {
        t.reject("error");
      }
    });
    const perQueue = spread(new Array(o.queues).fill(0), await maxOffsets(admin, cfg, topic).catch(() => []));
    return t.summary("mq", o.tasks, {
      concurrency: o.rate ? undefined : o.concurrency,
      rate: o.rate,
      content_bytes: o.contentBytes,
      timeout_s: o.timeoutS,
      receivers: o.receivers,
      topic,
      group,
      queues: o.queues,
      queue_spread: perQueue,
    });
  } finally {
    await publisher.close();
    await deprovision(admin, spec).catch((e) => console.error(`could not remove ${topic}/${group}: ${e}`));
    admin.close();
  }
}
