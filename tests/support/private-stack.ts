// A second, private stack (own folder, own free ports, own Redis) for tests that crash and restart
// servers, so the shared stack the other tests use is never touched.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ephemeralLow, portBindable } from "../../scripts/stack/ports.ts";
import { isOurs, type ProcRecord } from "../../scripts/stack/state.ts";

const STACK = join(import.meta.dir, "..", "..", "scripts", "stack.ts");

/**
 * 8 consecutive free ports; the broker takes broker-2, broker and broker+1. They come from below the
 * kernel's ephemeral range, so no outgoing connection can take one between this check and the bind,
 * and each is checked by binding it, not by connecting to it.
 */
export async function freePortBlock() {
  const blocks = Math.max(1, Math.floor((ephemeralLow() - 20_000) / 10) - 1);
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * blocks) * 10;
    let free = true;
    for (let k = 0; k < 8 && free; k++) free = await portBindable(base + k);
    if (free) return { namesrv: base, grpc: base + 1, proxyRemoting: base + 2, redis: base + 3, broker: base + 6 };
  }
  throw new Error("no block of 8 free ports found");
}

export type Part = "namesrv" | "proxy" | "redis";

export async function privateStack() {
  const ports = await freePortBlock();
  const dir = `/tmp/agent-prod-private-stack-${process.pid}-${ports.namesrv}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  delete env.REDIS_URL;
  Object.assign(env, {
    STACK_DIR: dir,
    MQ_NAMESRV: `127.0.0.1:${ports.namesrv}`,
    MQ_ENDPOINT: `127.0.0.1:${ports.grpc}`,
    STACK_BROKER_PORT: String(ports.broker),
    STACK_PROXY_REMOTING_PORT: String(ports.proxyRemoting),
    REDIS_PORT: String(ports.redis),
  });
  const seen = new Map<number, ProcRecord>();
  const paused = new Set<number>();
  const record = (part: Part): ProcRecord | undefined => {
    try {
      const r = JSON.parse(readFileSync(join(dir, "pids", `${part}.json`), "utf8")) as ProcRecord;
      seen.set(r.pid, r);
      return r;
    } catch {
      return undefined;
    }
  };

  /** Runs `bun scripts/stack.ts <cmd>` on this stack (with some variables overridden); never throws. */
  async function stack(cmd: "up" | "down" | "status", override: Record<string, string> = {}) {
    const p = Bun.spawn(["bun", STACK, cmd], { env: { ...env, ...override }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out: out + err };
  }

  return {
    ports,
    dir,
    /** the environment of this stack: its folder, ports and endpoints (for scripts run against it) */
    env,
    stack,
    /** The process records of the three parts (undefined where the stack has none). */
    records: () => ({ namesrv: record("namesrv"), proxy: record("proxy"), redis: record("redis") }),
    /** endpoints for createNamespace({ env }) and child processes */
    endpoints: {
      MQ_NAMESRV: env.MQ_NAMESRV!,
      MQ_ENDPOINT: env.MQ_ENDPOINT!,
      REDIS_URL: `redis://127.0.0.1:${ports.redis}`,
    },
    async up() {
      const r = await stack("up");
      if (r.code !== 0) throw new Error(`private stack up failed:\n${r.out}`);
    },
    /** The live pid of a part (throws when it is not running). */
    pid(part: Part): number {
      const r = record(part);
      if (!r || !isOurs(r)) throw new Error(`${part} is not running`);
      return r.pid;
    },
    /** Freezes a part (SIGSTOP): its sockets stay open and nothing answers, as in a hang or a fork stall. */
    pause(part: Part) {
      const pid = this.pid(part);
      paused.add(pid);
      process.kill(pid, "SIGSTOP");
    },
    /** Lets a paused part run on (SIGCONT). */
    resume(part: Part) {
      const pid = this.pid(part);
      process.kill(pid, "SIGCONT");
      paused.delete(pid);
    },
    /** Kills one part as a crash would (SIGKILL) and waits until it is gone. */
    async crash(part: Part) {
      const r = record(part);
      if (!r || !isOurs(r)) throw new Error(`${part} is not running`);
      process.kill(r.pid, "SIGKILL");
      for (let i = 0; i < 100 && isOurs(r); i++) await Bun.sleep(100);
    },
    async destroy() {
      for (const part of ["namesrv", "proxy", "redis"] as const) record(part);
      // A test that failed mid-hang must not leave a frozen server that ignores the SIGTERM of `down`.
      for (const pid of paused) {
        try {
          process.kill(pid, "SIGCONT");
        } catch {}
      }
      await stack("down").catch(() => {});
      for (const r of seen.values()) if (isOurs(r)) process.kill(r.pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
export type PrivateStack = Awaited<ReturnType<typeof privateStack>>;
