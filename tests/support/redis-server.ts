// A private redis-server on a free port, for tests that must do what the shared Redis must never see
// (SCRIPT FLUSH, CLIENT PAUSE, a password): started here, killed by stop().
import type { Subprocess } from "bun";
import { createClient } from "redis";
import { freePort, waitFor } from "./processes.ts";

export async function privateRedis(args: string[] = []) {
  const port = freePort();
  const proc: Subprocess = Bun.spawn(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args],
    { stdout: "ignore", stderr: "pipe", stdin: "ignore" },
  );
  const password = args[args.indexOf("--requirepass") + 1];
  const url = args.includes("--requirepass") ? `redis://:${password}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`;
  /** A client of its own (the caller quits it). */
  const client = async () => {
    const c = createClient({ url, socket: { connectTimeout: 1_000, reconnectStrategy: false } });
    c.on("error", () => {});
    await c.connect();
    return c;
  };
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${proc.exitCode}`);
    try {
      const c = await client();
      await c.quit();
      return true;
    } catch {
      return false;
    }
  }, 15_000, `private redis-server on port ${port}`);
  return {
    port,
    url,
    client,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}
