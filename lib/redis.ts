// The Redis client: built once from config. Commands fail fast while disconnected (no offline
// queue), so the API can answer 503 at once instead of hanging; the client keeps reconnecting.
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Redis } from "./scripts.ts";

export function redisUrl(cfg: Config): string {
  if (cfg.REDIS_URL) return cfg.REDIS_URL;
  return `redis://${cfg.REDIS_HOST}:${cfg.REDIS_PORT}`;
}

export function createRedis(cfg: Config, log: Logger): Redis {
  const client = createClient({
    url: redisUrl(cfg),
    ...(cfg.REDIS_PASSWORD ? { password: cfg.REDIS_PASSWORD } : {}),
    disableOfflineQueue: true,
    // No CLIENT SETINFO at connect: one command less for the ACL user (lib/state/acl.ts) to allow.
    disableClientInfo: true,
    socket: {
      // rediss:// turns TLS on; a private CA is trusted from REDIS_TLS_CA_FILE (hostname still verified).
      ...(cfg.REDIS_TLS_CA_FILE ? { ca: readFileSync(cfg.REDIS_TLS_CA_FILE) } : {}),
      connectTimeout: 2_000,
      reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2_000),
    },
  });
  let lastReport = 0;
  client.on("error", (e: Error) => {
    // Reconnection errors repeat every few hundred ms while Redis is down: report one a few seconds.
    const now = Date.now();
    if (now - lastReport > 5_000) {
      lastReport = now;
      log.warn("redis connection error", { error: e.message });
    }
  });
  return client as unknown as Redis;
}

/** Connects, but gives up waiting after `timeoutMs` (the client goes on reconnecting). */
export async function connectRedis(client: Redis, timeoutMs = 5_000): Promise<boolean> {
  const connecting = client.connect().then(
    () => true,
    () => false,
  );
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref?.());
  return Promise.race([connecting, timer]);
}

export async function closeRedis(client: Redis): Promise<void> {
  try {
    if (client.isOpen) await client.close();
  } catch {
    client.destroy();
  }
}
