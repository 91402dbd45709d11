// Redis credentials: a password-protected redis-server (started here on a free port) is reached with
// REDIS_URL carrying the password, or with REDIS_HOST/REDIS_PORT + REDIS_PASSWORD; a wrong one fails.
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
});
afterAll(() => server?.kill());

async function roundTrip(env: Record<string, string>) {
  const redis = createRedis(parseConfig(env), silentLogger);
  try {
    if (!(await connectRedis(redis, 2_000))) return false;
    const store = new TaskStore(redis, 60, "auth:");
    const id = crypto.randomUUID();
    await store.create(id, "u", "{}");
    return (await store.get(id))?.status === "queued";
  } catch {
    return false;
  } finally {
    if (redis.isOpen) await closeRedis(redis); else redis.destroy();
  }
}

test("REDIS_URL with the password", async () => {
  expect(await roundTrip({ REDIS_URL: `redis://:${password}@127.0.0.1:${port}` })).toBe(true);
});
test("REDIS_HOST, REDIS_PORT and REDIS_PASSWORD", async () => {
  expect(await roundTrip({ REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port), REDIS_PASSWORD: password })).toBe(true);
});
test("a wrong password does not get in", async () => {
  expect(await roundTrip({ REDIS_HOST: "127.0.0.1", REDIS_PORT: String(port), REDIS_PASSWORD: "wrong" })).toBe(false);
});
