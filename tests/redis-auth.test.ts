// Redis credentials: a password-protected redis-server (started here on a free port) is reached with
// REDIS_URL carrying the password, or with REDIS_HOST/REDIS_PORT + REDIS_PASSWORD; a wrong one is
// refused by the server for that reason (not a timeout or any other error).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { freePort, waitFor } from "./support/processes.ts";

const port = freePort();
const password = `pw-${crypto.randomUUID()}`;
let server: ReturnType<typeof Bun.spawn>;

beforeAll(async () => {
  server = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no"], {
    stdout: "ignore", stderr: "ignore",
  });
  await waitFor(async () => {
    const c = createRedis(parseConfig({ REDIS_URL: `redis://:${password}@127.0.0.1:${port}` }), silentLogger);
    const ok = await connectRedis(c, 500);
    if (c.isOpen) await closeRedis(c); else c.destroy();
    return ok;
  }, 10_000, "password-protected redis-server");
}, 30_000);
afterAll(() => server?.kill());

/** Connects as the services do and writes a task; the outcome, or the error that stopped it. */
async function roundTrip(env: Record<string, string>): Promise<{ ok: true } | { ok: false; error: Error }> {
  const redis = createRedis(parseConfig(env), silentLogger);
  // A refused login is not a rejection of connect(): the client reports it as an "error" event and
  // reconnects. The first such error is the answer.
  const refused = new Promise<never>((_, reject) => redis.on("error", reject));
  try {
    await Promise.race([redis.connect(), refused]);
    const store = new TaskStore(redis, 60, "auth:");
    const id = crypto.randomUUID();
    await store.create(id, "u", "{}");
    expect((await store.get(id))?.status).toBe("queued");
    return { ok: true };
  } catch (e) {
    return { ok: false, error: e as Error };
  } finally {
    if (redis.isOpen) await closeRedis(redis);
    else redis.destroy();
  }
}

test("REDIS_URL with the password", async () => {
  expect(await roundTrip({ REDIS_URL: `redis://:${password}@127.0.0.1:${port}` })).toEqual({ ok: true });
});
test("REDIS_HOST, REDIS_PORT and REDIS_PASSWORD", async () => {
  expect(await roundTrip({ REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port), REDIS_PASSWORD: password })).toEqual({ ok: true });
});
test("a wrong password does not get in: the server refuses it as a wrong password", async () => {
  const r = await roundTrip({ REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port), REDIS_PASSWORD: "wrong" });
  expect(r.ok).toBe(false);
  // Redis 6+ answers WRONGPASS; anything else (a timeout, a refused connection) is not this test's case.
  expect(r.ok ? "" : r.error.message).toMatch(/^WRONGPASS/);
});
