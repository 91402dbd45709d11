// Idempotency-Key records in Redis (POST /tasks; the flow is lib/tasks/idempotency.ts). One record
// per (tenant, user_id, key): the fingerprint of the first body, the task it was reserved for, and
// whether that task was accepted. The record's key name holds a SHA-256 of the three (fixed length,
// no user text, no braces), so each record is one key under its own hash tag: every script touches
// that key alone and runs unchanged on Redis Cluster.
import { createHash } from "node:crypto";
import type { Keys } from "../keys.ts";
import { runScript, send, type Redis } from "../scripts.ts";

export type Reservation =
  | { kind: "reserved" }
  | { kind: "conflict" }
  /** the key already names `taskId` for this body: `pending` while its request runs (or died), `accepted` once 202 */
  | { kind: "held"; taskId: string; state: "pending" | "accepted"; ageMs: number };

/** A task's fields the replay decision reads (lib/lua/create.lua, sent.lua, abandon.lua write them). */
export interface TaskProgress {
  status?: string;
  sent: boolean;
  attempts: number;
}

/** JSON with object keys sorted at every level: equal bodies give equal text, whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v as object).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

/** The fingerprint of a request: SHA-256 of its parsed, canonical body (unknown fields are not part of it). */
export const fingerprint = (input: object) => createHash("sha256").update(canonicalJson(input)).digest("hex");

export class IdempotencyRecords {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlSeconds: number,
  ) {}

  /** The record's Redis key for this tenant ("" without API keys), user and Idempotency-Key. */
  keyOf(tenant: string, userId: string, idempotencyKey: string): string {
    const scope = createHash("sha256").update(JSON.stringify([tenant, userId, idempotencyKey])).digest("hex");
    return this.keys.idempotency(scope);
  }

  /** Reserves the key for `taskId` (lib/lua/idem-reserve.lua); with `takeOverFrom`, only from that task. */
  async reserve(key: string, fp: string, taskId: string, takeOverFrom = ""): Promise<Reservation> {
    const r = (await runScript(this.redis, "idem-reserve", [key], [fp, taskId, this.ttlSeconds, takeOverFrom])) as [number, string?, string?, number?];
    if (r[0] === 1) return { kind: "reserved" };
    if (r[0] === 2) return { kind: "conflict" };
    return { kind: "held", taskId: String(r[1]), state: r[2] === "accepted" ? "accepted" : "pending", ageMs: Number(r[3] ?? 0) };
  }

  /** The task was accepted (202): later requests replay it. False when the key names another task now. */
  async accept(key: string, taskId: string): Promise<boolean> {
    return (await runScript(this.redis, "idem-settle", [key], [taskId, "accepted"])) === 1;
  }

  /** The request was answered 503 (its task never runs): the key is free for the client's retry. */
  async release(key: string, taskId: string): Promise<boolean> {
    return (await runScript(this.redis, "idem-settle", [key], [taskId, "release"])) === 1;
  }

  /** How far the task got: created? its send confirmed? claimed? */
  async progress(taskKey: string): Promise<TaskProgress> {
    const [status, sent, attempts] = await send<(string | null)[]>(this.redis, taskKey, ["HMGET", taskKey, "status", "sent", "attempts"]);
    return { ...(status ? { status } : {}), sent: sent === "1", attempts: Number(attempts ?? 0) };
  }
}
