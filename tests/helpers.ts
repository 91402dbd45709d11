// Shared test helper: a namespace per test (Redis key prefix, request/result topics, workers' group),
// provisioned with the same lib/provision.ts the CLI uses, and removed again by cleanup().
import { randomBytes } from "node:crypto";
import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "redis";
import { type Config, mqCredentials, parseConfig } from "../lib/config.ts";
import { type ProvisionSpec, deprovision, provision, specFromConfig } from "../lib/provision.ts";
import { Admin } from "../lib/rocketmq/admin.ts";

export interface TestNamespace {
  /** short unique id, e.g. "t3f9a2c1" */
  id: string;
  /** `test:${id}:` */
  redisPrefix: string;
  /** `${id}_req` */
  requestTopic: string;
  /** `${id}_res` */
  resultTopic: string;
  /** `${id}_grp`, subscribed to requestTopic, offsets set to the earliest message as provisioning does */
  group: string;
  /** process.env plus REDIS_PREFIX, MQ_TOPIC_REQUEST, MQ_TOPIC_RESULT, MQ_GROUP_AGENT (for child processes) */
  env: Record<string, string>;
  config: Config;
  /** an admin client of this namespace (closed by cleanup); e.g. to create more groups */
  admin(): Admin;
  /**
   * Creates an extra group on `topic` (default resultTopic), offsets at the earliest message; removed by cleanup.
   * Returns its name, `${id}_${suffix}`.
   */
  addGroup(suffix: string, topic?: string): Promise<string>;
  /** deletes the topics, groups and every Redis key under redisPrefix; safe to call twice */
  cleanup(): Promise<void>;
}

export function testEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env.MQ_NAMESRV ||= "127.0.0.1:9876";
  env.MQ_ENDPOINT ||= "127.0.0.1:8081";
  if (!env.REDIS_URL) env.REDIS_URL = `redis://${env.REDIS_HOST || "127.0.0.1"}:${env.REDIS_PORT || "6379"}`;
  return env;
}

export async function createNamespace(
  opts: { queues?: number; extraGroups?: string[]; /** endpoints of another stack */ env?: Record<string, string> } = {},
): Promise<TestNamespace> {
  const id = `t${randomBytes(4).toString("hex")}`;
  const env: Record<string, string> = {
    ...testEnv(),
    ...opts.env,
    REDIS_PREFIX: `test:${id}:`,
    MQ_TOPIC_REQUEST: `${id}_req`,
    MQ_TOPIC_RESULT: `${id}_res`,
    MQ_GROUP_AGENT: `${id}_grp`,
  };
  const config = parseConfig(env);
  const admin = new Admin({
    namesrv: config.MQ_NAMESRV,
    cluster: config.MQ_CLUSTER,
    timeoutMs: config.MQ_REQUEST_TIMEOUT_MS,
    credentials: mqCredentials(config),
  });
  const spec: ProvisionSpec = specFromConfig(config, { queues: opts.queues ?? 4, extraGroups: opts.extraGroups });
  try {
    await provision(admin, spec);
  } catch (e) {
    await deprovision(admin, spec).catch(() => {});
    admin.close();
    throw e;
  }

  let cleaning: Promise<void> | undefined;
  const ns: TestNamespace = {
    id,
    redisPrefix: env.REDIS_PREFIX!,
    requestTopic: config.MQ_TOPIC_REQUEST,
    resultTopic: config.MQ_TOPIC_RESULT,
    group: config.MQ_GROUP_AGENT,
    env,
    config,
    admin: () => admin,
    async addGroup(suffix, topic = config.MQ_TOPIC_RESULT) {
      const group = `${id}_${suffix}`;
      spec.groups.push({
        group,
        retryMaxTimes: config.MQ_RETRY_MAX_TIMES,
        retryPolicy: spec.groups[0]!.retryPolicy,
        topics: [topic],
      });
      await provision(admin, { ...spec, topics: [], groups: [spec.groups[spec.groups.length - 1]!] });
      return group;
    },
    cleanup() {
      cleaning ??= (async () => {
        const problems: unknown[] = [];
        try {
          await deprovision(admin, spec);
        } catch (e) {
          problems.push(e);
        }
        admin.close();
        try {
          await deleteRedisKeys(env.REDIS_URL!, env.REDIS_PREFIX!);
        } catch (e) {
          problems.push(e);
        }
        // An API of this namespace stopped with a tombstone pending (Redis away) left its journal
        // (lib/tasks/tombstone-journal.ts, default path): it names only this namespace's tasks.
        const journals = join(tmpdir(), "agent-prod");
        try {
          for (const f of readdirSync(journals)) if (f.startsWith(`tombstones-test_${id}_-`)) rmSync(join(journals, f), { force: true });
        } catch {} // no journal was ever written
        if (problems.length) throw new AggregateError(problems, `cleanup of test namespace ${id} failed`);
      })();
      return cleaning;
    },
  };
  return ns;
}

/** SCAN + UNLINK every key under the prefix. */
export async function deleteRedisKeys(url: string, prefix: string): Promise<number> {
  if (!prefix) throw new Error("refusing to delete Redis keys without a prefix");
  const client = createClient({ url });
  client.on("error", () => {}); // reported through the failing command instead
  await client.connect();
  let n = 0;
  try {
    // Keys start with the prefix, or with a hash tag holding it (`{P task:<id>:status}:task`, `{P bucket:<n>}:…`).
    const escaped = prefix.replace(/[*?[\]\\]/g, "\\$&");
    for (const pattern of [`${escaped}*`, `{${escaped}*`])
      for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 500 })) {
        const keys = (Array.isArray(batch) ? batch : [batch]) as string[];
        if (keys.length) n += await client.unlink(keys);
      }
  } finally {
    await client.quit().catch(() => client.destroy?.());
  }
  return n;
}
