// The Redis client: built once from config, a single-node client or, when REDIS_CLUSTER_NODES is
// set, node-redis's cluster client (same credentials and TLS settings). Commands fail fast while
// disconnected (no offline queue), so the API can answer 503 at once instead of hanging; the client
// keeps reconnecting. Every command sent through lib/scripts.ts send() has a timeout
// (REDIS_TIMEOUT_MS): a Redis that hangs (a fork stall, a failover, SIGSTOP) turns into errors
// instead of callers waiting forever. The connection
// is kept across timeouts, so late replies still pair with their commands; a dead peer (partition)
// is noticed through TCP keepalive and reconnected.
import { readFileSync } from "node:fs";
import { createClient, createCluster } from "redis";
import { ConfigError, parseClusterNodes, redisUrlProblem, type ClusterNode, type Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { commandTimeout, isCluster, send, setCommandTimeout, type ClusterRedis, type Redis, type SingleRedis } from "./scripts.ts";

export type { Redis };

export function redisUrl(cfg: Config): string {
  if (cfg.REDIS_URL) return cfg.REDIS_URL;
  return `${cfg.REDIS_TLS ? "rediss" : "redis"}://${cfg.REDIS_HOST}:${cfg.REDIS_PORT}`;
}

/**
 * host:port list of REDIS_CLUSTER_NODES (an IPv6 host without its brackets), or [] for a single node.
 * parseConfig checked it; a Config built another way gets the same ConfigError, not a client that
 * retries a NaN port forever.
 */
export function clusterNodes(cfg: Config): ClusterNode[] {
  if (!cfg.REDIS_CLUSTER_NODES) return [];
  const nodes = parseClusterNodes(cfg.REDIS_CLUSTER_NODES);
  if (!Array.isArray(nodes)) throw new ConfigError([nodes.problem]);
  return nodes;
}

/** Credentials and TLS for every connection: REDIS_USERNAME/REDIS_PASSWORD win over REDIS_URL's. */
function auth(cfg: Config) {
  // parseConfig checked REDIS_URL; a Config built another way gets the same message, never the
  // TypeError of new URL(), whose `input` (printed by an entry file's catch) holds the password.
  const problem = cfg.REDIS_URL ? redisUrlProblem(cfg.REDIS_URL) : undefined;
  if (problem) throw new ConfigError([`REDIS_URL=(hidden): ${problem}`]);
  const url = cfg.REDIS_URL ? new URL(cfg.REDIS_URL) : undefined;
  const username = cfg.REDIS_USERNAME ?? (url?.username ? decodeURIComponent(url.username) : undefined);
  const password = cfg.REDIS_PASSWORD ?? (url?.password ? decodeURIComponent(url.password) : undefined);
  const tls = cfg.REDIS_TLS || url?.protocol === "rediss:";
  return { username, password, tls };
}

const reconnectStrategy = (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2_000);

export function createRedis(cfg: Config, log: Logger): Redis {
  const { username, password, tls } = auth(cfg);
  const creds = { ...(username ? { username } : {}), ...(password ? { password } : {}) };
  // node-redis rejects a command still waiting after `timeout` (written or not): TimeoutError.
  const commandOptions = { timeout: cfg.REDIS_TIMEOUT_MS };
  const socket = {
    connectTimeout: Math.max(cfg.REDIS_TIMEOUT_MS, 1_000),
    reconnectStrategy,
    ...(tls ? { tls: true as const } : {}),
    // A private CA is trusted from REDIS_TLS_CA_FILE (the hostname is still verified).
    ...(cfg.REDIS_TLS_CA_FILE ? { ca: readFileSync(cfg.REDIS_TLS_CA_FILE) } : {}),
  };
  // No CLIENT SETINFO at connect: one command less for the ACL user (lib/state/acl.ts) to allow.
  const disableClientInfo = true;
  const nodes = clusterNodes(cfg);
  let client: Redis;
  if (nodes.length > 0) {
    client = createCluster({
      rootNodes: nodes.map((n) => ({ socket: { host: n.host, port: n.port, ...socket } })),
      defaults: { ...creds, disableOfflineQueue: true, disableClientInfo, socket },
      commandOptions,
    }) as unknown as ClusterRedis;
  } else {
    client = createClient({ url: redisUrl(cfg), ...creds, disableOfflineQueue: true, disableClientInfo, socket, commandOptions }) as unknown as SingleRedis;
  }
  setCommandTimeout(client, cfg.REDIS_TIMEOUT_MS);
  let lastReport = 0;
  client.on("error", (e: Error) => {
    // Reconnection errors repeat every few hundred ms while Redis is down: report one a few seconds.
    const now = Date.now();
    if (now - lastReport > 5_000) {
      lastReport = now;
      log.warn("redis connection error", { error: e.message });
    }
  });
  return client;
}

/** Connects, but gives up waiting after `timeoutMs` (the client goes on reconnecting). */
export async function connectRedis(client: Redis, timeoutMs = 5_000): Promise<boolean> {
  const connecting = (client.connect() as Promise<unknown>).then(
    () => true,
    () => {
      // A single-node client keeps reconnecting by itself; a cluster client whose first topology
      // discovery failed stays closed: try again until it is open (or closed on purpose).
      if (isCluster(client)) retryClusterConnect(client);
      return false;
    },
  );
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref?.());
  return Promise.race([connecting, timer]);
}

const closing = new WeakSet<object>();
function retryClusterConnect(client: ClusterRedis) {
  const t = setTimeout(() => {
    if (client.isOpen || closing.has(client)) return;
    (client.connect() as Promise<unknown>).catch(() => retryClusterConnect(client));
  }, 2_000);
  t.unref?.();
}

/** How long closeRedis waits for replies still due, past the command timeout, before cutting the connection. */
const CLOSE_MARGIN_MS = 500;

/**
 * Closes the connection after the replies still due (a counter flush, a last write), but never waits
 * on a Redis that does not answer: close() waits for every command in flight, and the connection is
 * kept across timeouts (late replies pair with their commands), so with Redis hung a command that
 * already timed out kept close() waiting forever and a stopping worker ran into its shutdown deadline
 * (exit 1). Past the command timeout nobody awaits those replies: the connection is destroyed.
 */
export async function closeRedis(client: Redis): Promise<void> {
  closing.add(client);
  if (!client.isOpen) return;
  const closed = client.close().then(() => true, () => false);
  const bound = (commandTimeout(client) ?? 2_000) + CLOSE_MARGIN_MS;
  const timer = new Promise<false>((r) => setTimeout(() => r(false), bound).unref?.());
  if (!(await Promise.race([closed, timer]))) client.destroy();
}

/** PING (on a cluster: every master answers). */
export async function pingRedis(client: Redis): Promise<boolean> {
  if (!isCluster(client)) return (await send(client, undefined, ["PING"])) === "PONG";
  const masters = client.masters;
  if (masters.length === 0) return false;
  const replies = await Promise.all(
    masters.map(async (m) => {
      const node = await client.nodeClient(m);
      setCommandTimeout(node, commandTimeout(client));
      return send(node, undefined, ["PING"]);
    }),
  );
  return replies.every((r) => r === "PONG");
}

/** Every key matching `pattern` (SCAN; on a cluster, on every master). */
export async function* scanKeys(client: Redis, pattern: string, count = 500): AsyncGenerator<string[]> {
  const nodes: SingleRedis[] = isCluster(client)
    ? await Promise.all(client.masters.map((m) => client.nodeClient(m) as Promise<SingleRedis>))
    : [client];
  for (const node of nodes)
    for await (const batch of node.scanIterator({ MATCH: pattern, COUNT: count })) {
      const keys = (Array.isArray(batch) ? batch : [batch]) as string[];
      if (keys.length) yield keys;
    }
}

/** UNLINKs keys one by one through the router (keys of a batch may live on different cluster nodes). */
export async function unlinkKeys(client: Redis, keys: string[]): Promise<number> {
  const n = await Promise.all(keys.map((k) => send<number>(client, k, ["UNLINK", k])));
  return n.reduce((a, b) => a + Number(b), 0);
}
