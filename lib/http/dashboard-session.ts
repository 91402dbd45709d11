// The dashboard's login cookie (lib/http/dashboard.ts): `<issued at, ms>.<nonce>.<MAC>`, the MAC an
// HMAC-SHA256 of the first two under a key derived from ADMIN_TOKEN (never the token itself). The
// issued-at bounds a session to SESSION_MS on the server, whatever the browser does with Max-Age; the
// random nonce names one session, so a logout can revoke it: a Redis key per revoked nonce, expiring
// when the session would have (no list to prune). Rotating ADMIN_TOKEN still ends every session.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Keys } from "../keys.ts";
import { send, type Redis } from "../scripts.ts";

export const SESSION_MS = 12 * 3600_000;
/**
 * Clock skew allowed between the API processes behind one load balancer: a cookie minted by one whose
 * clock is ahead is not refused by another as "from the future", and a revocation outlives the
 * session on a clock that is behind.
 */
const SKEW_MS = 60_000;
const FORMAT = /^(\d{13})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

const sha = (s: string) => createHash("sha256").update(s, "utf8").digest();
/** Equal in constant time (whatever the lengths: both are hashed first). */
export const sameSecret = (a: string, b: string) => timingSafeEqual(sha(a), sha(b));

/** A key of its own for the MACs: the token is never used as a MAC key directly. */
const macKey = (token: string) => createHmac("sha256", token).update("agent-prod dashboard session key v2").digest();
const macOf = (token: string, issuedAt: number, nonce: string) =>
  createHmac("sha256", macKey(token)).update(`${issuedAt}.${nonce}`).digest("base64url");

/** A new session's cookie value; `issuedAt` (ms) other than now only in tests. */
export function mintSession(token: string, issuedAt = Date.now()): string {
  const nonce = randomBytes(16).toString("base64url");
  return `${issuedAt}.${nonce}.${macOf(token, issuedAt, nonce)}`;
}

export interface Session {
  nonce: string;
  /** ms left before it expires (at `now`) */
  remainingMs: number;
}

/** The session of a cookie value if its MAC is ours and it is neither expired nor from the future; revocation is checked apart. */
export function readSession(token: string, value: string, now = Date.now()): Session | undefined {
  const m = FORMAT.exec(value);
  if (!m) return undefined;
  const issuedAt = Number(m[1]);
  if (!sameSecret(m[3]!, macOf(token, issuedAt, m[2]!))) return undefined;
  const remainingMs = issuedAt + SESSION_MS - now;
  if (remainingMs <= 0 || issuedAt > now + SKEW_MS) return undefined;
  return { nonce: m[2]!, remainingMs };
}

/** Logout: the session is refused from now on, by every API process sharing this Redis. */
export async function revokeSession(redis: Redis, keys: Keys, s: Session): Promise<void> {
  const k = keys.dashboardRevoked(s.nonce);
  await send(redis, k, ["SET", k, "1", "PX", String(s.remainingMs + SKEW_MS)]);
}

/** Throws when Redis does not answer: the caller refuses (fails closed) rather than guess. */
export async function isRevoked(redis: Redis, keys: Keys, s: Session): Promise<boolean> {
  const k = keys.dashboardRevoked(s.nonce);
  return Number(await send(redis, k, ["EXISTS", k])) > 0;
}
