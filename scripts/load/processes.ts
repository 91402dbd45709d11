// What a benchmark run around scripts/load.ts needs besides the load itself: fresh API and worker
// processes (start, stop, wait until one answers over HTTP, a free port), and a namespace of its own
// (topics, group, key prefix) provisioned on the servers the environment names and removed afterwards,
// keys included. Used by scripts/compare.ts, scripts/observe-overhead.ts, scripts/chaos/run.ts and the tests.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync } from "node:fs";
import { createClient } from "redis";
import { mqCredentials, parseConfig, type Config } from "../../lib/config.ts";
import { deprovision, provision, specFromConfig } from "../../lib/provision.ts";
import { redisUrl } from "../../lib/redis.ts";
import { Admin } from "../../lib/rocketmq/admin.ts";

/** A TCP port free now on 127.0.0.1 (the OS picks it; a race with another process is possible but rare). */
export function freePort(): number {
  const s = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = s.port!;
  s.stop(true);
  return port;
}

/** Starts a command in the background, its stdout and stderr to `log`. */
export function start(cmd: string[], cwd: string, env: Record<string, string>, log: string): ChildProcess {
  const fd = openSync(log, "w");
  return spawn(cmd[0]!, cmd.slice(1), { cwd, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd] });
}

/** SIGTERM, then SIGKILL after 30 s; resolves when the process has exited. */
export async function stop(p: ChildProcess) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(t);
}

/** Waits (60 s at most) until `url` answers 2xx; fails early when `p` exits. `what` names it in errors. */
export async function waitHttp(url: string, p: ChildProcess, what: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (p.exitCode !== null) throw new Error(`${what} exited (${p.exitCode}) before it was ready`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await Bun.sleep(200);
  }
  throw new Error(`${what} not ready within 60 s (${url})`);
}

/** Deletes the keys matching each pattern (SCAN + UNLINK) and the keys named; errors are logged, not thrown. */
export async function deleteKeys(cfg: Config, who: string, patterns: string[], keys: string[] = []) {
  const c = createClient({ url: redisUrl(cfg), password: cfg.REDIS_PASSWORD });
  c.on("error", () => {});
  try {
    await c.connect();
    for (const pattern of patterns)
      for await (const batch of c.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
        const ks = (Array.isArray(batch) ? batch : [batch]) as string[];
        if (ks.length) await c.unlink(ks);
      }
    if (keys.length) await c.unlink(keys);
  } catch (e) {
    console.error(`${who}: could not delete ${patterns.join(", ")}: ${e}`);
  } finally {
    await c.quit().catch(() => {});
  }
}

export interface Namespace {
  /** `<tag><6 hex digits>`: the topics, group and key prefix all start with it */
  id: string;
  /** MQ_TOPIC_REQUEST, MQ_TOPIC_RESULT, MQ_GROUP_AGENT, REDIS_PREFIX: give them to the API, the worker and load.ts */
  env: Record<string, string>;
  /** creates the topics and the group (the delay and dead-letter ones too) */
  provision(): Promise<void>;
  /** removes them and every key under the prefix; logs what it could not remove, never throws */
  remove(): Promise<void>;
}

/** A namespace of its own on the servers of `cfg` (REDIS_URL, MQ_NAMESRV, ...); `who` names the caller in logs. */
export function namespace(cfg: Config, tag: string, who: string): Namespace {
  const id = `${tag}${randomBytes(3).toString("hex")}`;
  const env = { MQ_TOPIC_REQUEST: `${id}_req`, MQ_TOPIC_RESULT: `${id}_res`, MQ_GROUP_AGENT: `${id}_grp`, REDIS_PREFIX: `${id}:` };
  const spec = specFromConfig(parseConfig({ ...process.env, ...env }), { queues: cfg.MQ_QUEUES });
  let admin: Admin | undefined;
  const adminOf = () =>
    (admin ??= new Admin({ namesrv: cfg.MQ_NAMESRV, cluster: cfg.MQ_CLUSTER, timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS, credentials: mqCredentials(cfg) }));
  return {
    id,
    env,
    async provision() {
      await provision(adminOf(), spec);
    },
    async remove() {
      await deprovision(adminOf(), spec).catch((e) => console.error(`${who}: could not remove ${id}'s topics: ${e}`));
      admin?.close();
      admin = undefined;
      // Per-task keys sit under a hash tag, `{<prefix>task:...}`: both forms.
      await deleteKeys(cfg, who, [`${id}:*`, `{${id}:*`]);
    },
  };
}

/** The environment of a benchmark's API and worker: the namespace, the demo agent's delay, a free API port, JSON logs. */
export function systemEnv(ns: Namespace, o: { agentMs: number; workerConcurrency: number }): Record<string, string> {
  return {
    ...ns.env,
    AGENT_DELAY_MS: String(o.agentMs),
    WORKER_CONCURRENCY: String(o.workerConcurrency),
    API_HOST: "127.0.0.1",
    API_PORT: String(freePort()),
    LOG_FORMAT: "json",
  };
}
