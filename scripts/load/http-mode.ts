// http mode: POST /tasks to the API, learn completion from the result topic (a group of the run's own),
// then check a sample against GET /tasks/:id. Works against any wire-compatible system (wire.ts).
import type { Config } from "../../lib/config.ts";
import { RESULT_TAG } from "../../lib/model.ts";
import type { LoadOptions } from "./args.ts";
import { runAndWait } from "./driver.ts";
import { adminFor, createTailGroup, maxOffsets, removeGroup, runId, spread } from "./groups.ts";
import { INVISIBLE_MS, startReceiver, type Receiver } from "./receiver.ts";
import { Tracker, type Summary, type Verification } from "./tracker.ts";
import { acceptedTaskId, resultOutcome } from "./wire.ts";

/** `afterResults`: runs once every result is in (or the timeout passed), before the receiver closes. */
export async function runHttp(cfg: Config, o: LoadOptions, afterResults?: (t: Tracker) => Promise<unknown>): Promise<Summary> {
  const admin = adminFor(cfg);
  const group = `${runId()}_res`;
  const content = "x".repeat(o.contentBytes);
  let receiver: Receiver | undefined;
  try {
    const before = await maxOffsets(admin, cfg, cfg.MQ_TOPIC_REQUEST).catch(() => []);
    await createTailGroup(admin, cfg, group, cfg.MQ_TOPIC_RESULT);
    const t = new Tracker();
    receiver = await startReceiver(cfg, group, cfg.MQ_TOPIC_RESULT, RESULT_TAG, o.receivers, (m, at) => {
      let outcome;
      try {
        outcome = resultOutcome(JSON.parse(m.body.toString("utf8")));
      } catch {
        return; // not JSON: not a result message of any system we measure
      }
      if (outcome) t.finish(outcome.taskId, outcome.status, at);
    });
    await runAndWait(t, o, receiver, async (i) => {
      const sentAt = performance.now();
      try {
        const res = await fetch(`${o.api}/tasks`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ user_id: `load-${i % 1000}`, content }),
        });
        const text = await res.text();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        // Any 2xx with a task_id: ours answers 202, the original 200.
        const id = acceptedTaskId(res.status, body);
        if (id) t.accept(id, sentAt);
        else t.reject(String(res.status));
      } catch {
        t.reject("error");
      }
    }, afterResults && (() => afterResults(t)));
    const verify = await verifySample(o, t);
    if (!o.json && process.stderr.isTTY) process.stderr.write("removing the run's consumer group (waits for the broker's checkpoints)...\n");
    const after = await maxOffsets(admin, cfg, cfg.MQ_TOPIC_REQUEST).catch(() => []);
    return t.summary("http", o.tasks, {
      api: o.api,
      concurrency: o.rate ? undefined : o.concurrency,
      rate: o.rate,
      content_bytes: o.contentBytes,
      timeout_s: o.timeoutS,
      receivers: o.receivers,
      result_topic: cfg.MQ_TOPIC_RESULT,
      result_group: group,
      request_topic: cfg.MQ_TOPIC_REQUEST,
      request_queue_spread: before.length === after.length ? spread(before, after) : undefined,
    }, verify);
  } finally {
    await removeGroup(admin, cfg, group, receiver?.lastMessagesAt ?? 0, INVISIBLE_MS).catch((e) =>
      console.error(`could not delete group ${group}: ${e}`),
    );
    admin.close();
  }
}

/** GET /tasks/:id for up to `o.verify` finished tasks, spread over the run: the status must agree. */
async function verifySample(o: LoadOptions, t: Tracker): Promise<Verification> {
  const finished = [...t.records].filter(([, r]) => r.status);
  const n = Math.min(o.verify, finished.length);
  const v: Verification = { checked: 0, agreed: 0, problems: [] };
  for (let k = 0; k < n; k++) {
    const [id, r] = finished[Math.floor((k * finished.length) / n)]!;
    v.checked++;
    try {
      const res = await fetch(`${o.api}/tasks/${id}`);
      const view = (await res.json()) as { status?: string };
      if (res.status === 200 && view.status === r.status) v.agreed++;
      else v.problems.push(`task ${id}: result says ${r.status}, GET says ${res.status} ${view.status ?? ""}`.trim());
    } catch (e) {
      v.problems.push(`task ${id}: GET failed: ${(e as Error).message}`);
    }
  }
  return v;
}
