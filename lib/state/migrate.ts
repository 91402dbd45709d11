// One-shot move of the previous Redis layout (before hash tags and buckets) to the current one
// (lib/keys.ts). Previous layout, under the same prefix P:
//   P task:<id>         HASH   the task (status, user_id, attempts, owner, lease_until, result, error,
//                              times, message)
//   P task:<id>:status  STRING unchanged: the original service's key, kept where it is
//   P outbox            ZSET   id -> accepted at (ms): send not confirmed
//   P outbox:bodies     HASH   id -> request message body
//   P stalled           ZSET   id -> when to re-publish
// Run with the API and workers stopped. Idempotent: a task already in the new layout is left as it
// is (its old hash is removed), so a second run finds nothing to do.
import type { Keys } from "../keys.ts";
import { scanKeys } from "../redis.ts";
import { send, type Redis } from "../scripts.ts";

export interface MigrationReport {
  tasks: number;
  skipped: number;
  outbox: number;
  stalled: number;
}

const escapeGlob = (s: string) => s.replace(/[*?[\]\\]/g, "\\$&");
const FINISHED = new Set(["done", "failed"]);

export async function migrateKeys(redis: Redis, prefix: string, keys: Keys): Promise<MigrationReport> {
  const report: MigrationReport = { tasks: 0, skipped: 0, outbox: 0, stalled: 0 };
  const oldOutbox = `${prefix}outbox`;
  const oldBodies = `${prefix}outbox:bodies`;
  const oldStalled = `${prefix}stalled`;
  const unsent = new Map<string, number>();
  const outboxFlat = (await send<string[]>(redis, oldOutbox, ["ZRANGE", oldOutbox, "0", "-1", "WITHSCORES"])) ?? [];
  for (const [id, score] of pairs(outboxFlat)) unsent.set(id, Number(score));
  const bodies = await hashOf(redis, oldBodies);

  const idPattern = /^task:([^:{}]+)$/;
  for await (const batch of scanKeys(redis, `${escapeGlob(prefix)}task:*`)) {
    for (const oldKey of batch) {
      const m = idPattern.exec(oldKey.slice(prefix.length));
      if (!oldKey.startsWith(prefix) || !m) continue; // the :status strings, or other keys
      if ((await send(redis, oldKey, ["TYPE", oldKey])) !== "hash") continue;
      const id = m[1]!;
      const newKey = keys.task(id);
      if (Number(await send(redis, newKey, ["EXISTS", newKey])) === 1) {
        report.skipped++;
      } else {
        const h = await hashOf(redis, oldKey);
        if (!h.message && bodies[id]) h.message = bodies[id]!;
        if (FINISHED.has(h.status ?? "")) {
          delete h.message;
          delete h.owner;
          delete h.lease_until;
        } else {
          h.sent = unsent.has(id) ? "0" : "1";
        }
        const ttl = Number(await send(redis, oldKey, ["PTTL", oldKey]));
        const args = Object.entries(h).flat();
        if (args.length) await send(redis, newKey, ["HSET", newKey, ...args]);
        if (ttl > 0) await send(redis, newKey, ["PEXPIRE", newKey, String(ttl)]);
        report.tasks++;
      }
      await send(redis, oldKey, ["DEL", oldKey]);
    }
  }

  for (const [id, at] of unsent) {
    const zset = keys.outbox(keys.bucketOf(id));
    await send(redis, zset, ["ZADD", zset, String(at), id]);
    report.outbox++;
  }
  const stalledFlat = (await send<string[]>(redis, oldStalled, ["ZRANGE", oldStalled, "0", "-1", "WITHSCORES"])) ?? [];
  for (const [id, at] of pairs(stalledFlat)) {
    const zset = keys.stalled(keys.bucketOf(id));
    await send(redis, zset, ["ZADD", zset, String(at), id]);
    report.stalled++;
  }
  for (const k of [oldOutbox, oldBodies, oldStalled]) await send(redis, k, ["DEL", k]);
  return report;
}

/** A ZRANGE WITHSCORES reply, flat (RESP2) or as [member, score] pairs / objects (RESP3), as pairs. */
function pairs(reply: unknown): [string, string][] {
  const a = (reply ?? []) as unknown[];
  if (a.length && Array.isArray(a[0])) return (a as [unknown, unknown][]).map(([m, s]) => [String(m), String(s)]);
  if (a.length && typeof a[0] === "object" && a[0] !== null)
    return (a as { value: unknown; score: unknown }[]).map((e) => [String(e.value), String(e.score)]);
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < a.length; i += 2) out.push([String(a[i]), String(a[i + 1])]);
  return out;
}

async function hashOf(redis: Redis, key: string): Promise<Record<string, string>> {
  const r = await send<unknown>(redis, key, ["HGETALL", key]);
  if (Array.isArray(r)) return Object.fromEntries(pairs(r));
  return { ...((r ?? {}) as Record<string, string>) };
}
