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
