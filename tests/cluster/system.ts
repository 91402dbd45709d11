// The system on a cluster stack as a user runs it: `bun api.ts` and `bun worker.ts` as child
// processes with the namespace's environment, POSTs and GETs over HTTP.
import { expect } from "bun:test";
import type { TestNamespace } from "../helpers.ts";
import { freePort, Service, waitFor } from "../support/processes.ts";
import { Admin } from "../../lib/rocketmq/admin.ts";
import type { ClusterStack } from "./stack.ts";

export async function startApi(ns: TestNamespace, extra: Record<string, string> = {}) {
  const port = freePort();
  const api = new Service("api.ts", { ...ns.env, ...extra, API_PORT: String(port), API_HOST: "127.0.0.1" });
  await api.waitForLog("api listening", 60_000);
  const base = `http://127.0.0.1:${port}`;
  /** One POST; the task id when accepted (202), else undefined after checking the answer is the documented 503. */
  const post = async (content: string): Promise<string | undefined> => {
    const res = await fetch(`${base}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: "cluster", content }),
    }).catch(() => undefined);
    if (res?.status === 202) return ((await res.json()) as { task_id: string }).task_id;
    expect([503, undefined], `POST answered ${res?.status}: ${res ? await res.text() : "no answer"}`).toContain(res?.status);
    return undefined;
  };
  /** POSTs until accepted; a 503 while a server is down is the documented answer: retry later. */
  const submit = async (content: string, deadlineMs = 120_000) => {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const id = await post(content);
      if (id) return id;
      if (Date.now() > deadline) throw new Error(`POST not accepted within ${deadlineMs} ms`);
      await Bun.sleep(250);
    }
  };
  const view = async (id: string) => {
    const res = await fetch(`${base}/tasks/${id}`).catch(() => undefined);
    return res?.status === 200 ? ((await res.json()) as { status: string; result: unknown; attempts: number }) : undefined;
  };
  const status = async (id: string) => (await view(id))?.status;
  /** Waits until every task is done; on timeout names the ones that are not, with their status. */
  const allDone = async (ids: string[], ms: number) => {
    let pending: string[] = ids;
    await waitFor(
      async () => {
        const st = await Promise.all(pending.map(async (id) => [id, await status(id)] as const));
        pending = st.filter(([, s]) => s !== "done").map(([id]) => id);
        return pending.length === 0;
      },
      ms,
      () => `${ids.length} tasks done; not done: ${pending.length}: ${pending.slice(0, 5).join(", ")}`,
    );
  };
  return { api, base, post, submit, view, status, allDone };
}

export function startWorkers(ns: TestNamespace, n: number, extra: Record<string, string> = {}) {
  return Array.from({ length: n }, () => new Service("worker.ts", { ...ns.env, ...extra }));
}

/** Messages each broker holds on a topic (sum of its queues' max offsets); a broker that does not answer is left out. */
export async function messagesPerBroker(stack: ClusterStack, topic: string, queues: number): Promise<Record<string, number>> {
  const admin = new Admin({ namesrv: stack.endpoints.MQ_NAMESRV, cluster: "DefaultCluster", timeoutMs: 3000 });
  try {
    const out: Record<string, number> = {};
    for (const b of stack.ports.brokers) {
      try {
        let sum = 0;
        for (let q = 0; q < queues; q++) sum += await admin.maxOffset(`127.0.0.1:${b.port}`, topic, q);
        out[b.name] = sum;
      } catch {}
    }
    return out;
  } finally {
    admin.close();
  }
}

export type PostRecord = { at: number; id?: string };

/**
 * POSTs one task every `everyMs` until stop() (one try each, no retry), recording when each was
 * answered and whether it was accepted: the history a fault test judges.
 */
export function postLoop(sys: Awaited<ReturnType<typeof startApi>>, label: string, everyMs = 100) {
  const history: PostRecord[] = [];
  let running = true;
  let paused: Promise<void> | undefined;
  let resume = () => {};
  let idle = () => {};
  const done = (async () => {
    for (let i = 0; running; i++) {
      if (paused) {
        idle();
        await paused;
      }
      const id = await sys.post(`${label} ${i}`);
      history.push({ at: Date.now(), id });
      await Bun.sleep(everyMs);
    }
  })();
  return {
    history,
    accepted: () => history.filter((h) => h.id).map((h) => h.id!),
    /** Resolves once no POST is in flight; none starts until resume(). */
    pause() {
      paused = new Promise((r) => (resume = () => { paused = undefined; r(); }));
      return new Promise<void>((r) => (idle = r));
    },
    resume: () => resume(),
    async stop() {
      running = false;
      resume();
      await done;
      return history;
    },
  };
}

/** The longest time POSTs kept failing: from the first failure of a run to the next success (or the end). */
export function longestOutageMs(history: PostRecord[]): number {
  let longest = 0;
  let since: number | undefined;
  for (const h of history) {
    if (!h.id) since ??= h.at;
    else if (since !== undefined) {
      longest = Math.max(longest, h.at - since);
      since = undefined;
    }
  }
  if (since !== undefined) longest = Math.max(longest, history[history.length - 1]!.at - since);
  return longest;
}
