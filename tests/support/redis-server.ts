// A private redis-server on a free port, for tests that stop, hang (SIGSTOP) or restart Redis
// without touching the shared one.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "redis";
import { freePort, waitFor } from "./processes.ts";

export async function privateRedis(extraArgs: string[] = []) {
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "private-redis-"));
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  const url = `redis://127.0.0.1:${port}`;

  async function start() {
    proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", ...extraArgs], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await waitFor(async () => {
      const c = createClient({ url, socket: { reconnectStrategy: false } });
      c.on("error", () => {});
      try {
        await c.connect();
        await c.ping();
        await c.close();
        return true;
      } catch {
        return false;
      }
    }, 10_000, `redis-server on ${port}`);
  }

  await start();
  return {
    port,
    url,
    /** stops it (SIGTERM, waits for the exit); the append-only file keeps the data for start() */
    async stop() {
      proc?.kill("SIGTERM");
      await proc?.exited;
      proc = undefined;
    },
    start,
    pause: () => proc?.kill("SIGSTOP"),
    resume: () => proc?.kill("SIGCONT"),
    async close() {
      proc?.kill("SIGCONT");
      proc?.kill("SIGKILL");
      await proc?.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
export type PrivateRedis = Awaited<ReturnType<typeof privateRedis>>;

/**
 * A private redis-server in cluster mode that owns all 16384 slots alone: a Redis Cluster client
 * works against it, and it refuses a script whose KEYS span slots (CROSSSLOT), as a real cluster
 * does. `nodes` is the REDIS_CLUSTER_NODES value; stop() kills it and removes its folder.
 */
export async function oneNodeCluster() {
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "cluster-redis-"));
  const proc = Bun.spawn(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
      "--cluster-config-file", join(dir, "nodes.conf"), "--dir", dir, "--save", "", "--appendonly", "no"],
    { stdout: "ignore", stderr: "ignore" },
  );
  const admin = createClient({ url: `redis://127.0.0.1:${port}` });
  admin.on("error", () => {});
  await waitFor(async () => admin.connect().then(() => true, () => false), 10_000, "cluster-mode redis-server");
  // ADDSLOTSRANGE is Redis 7; older servers take the slots one by one.
  await admin.sendCommand(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]).catch(() =>
    admin.sendCommand(["CLUSTER", "ADDSLOTS", ...Array.from({ length: 16384 }, (_, i) => String(i))]),
  );
  await waitFor(async () => String(await admin.sendCommand(["CLUSTER", "INFO"])).includes("cluster_state:ok"), 10_000, "cluster_state:ok");
  await admin.close();
  return {
    nodes: `127.0.0.1:${port}`,
    stop() {
      proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
