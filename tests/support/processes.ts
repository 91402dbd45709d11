// Runs api.ts / worker.ts as child processes the way a user does, and collects their JSON log lines.
import type { Subprocess } from "bun";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
const running = new Set<Service>();

export class Service {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly exited: Promise<number>;

  constructor(entry: "api.ts" | "worker.ts", env: Record<string, string>) {
    this.proc = Bun.spawn(["bun", join(ROOT, entry)], {
      cwd: ROOT,
      env: { ...env, LOG_FORMAT: "json", LOG_LEVEL: env.LOG_LEVEL ?? "info" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    void this.#read(this.proc.stdout);
    void this.#read(this.proc.stderr);
    this.exited = this.proc.exited;
    running.add(this);
    void this.exited.then(() => running.delete(this));
  }

  async #read(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.raw.push(line);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          /* not a log line */
        }
      }
    }
  }

  /** Log lines whose msg is `msg` (and whose task_id is `taskId`, when given). */
  logs(msg: string, taskId?: string) {
    return this.lines.filter((l) => l.msg === msg && (taskId === undefined || l.task_id === taskId));
  }

  async waitForLog(msg: string, timeoutMs = 30_000, taskId?: string) {
    await waitFor(() => this.logs(msg, taskId).length > 0, timeoutMs, () => `log "${msg}"\n${this.raw.slice(-20).join("\n")}`);
  }

  signal(sig: "SIGTERM" | "SIGINT" | "SIGKILL") {
    this.proc.kill(sig);
  }

  /** SIGTERM, then SIGKILL if it is still alive after `ms`; resolves with the exit code. */
  async stop(ms = 60_000): Promise<number> {
    if (this.proc.exitCode !== null || this.proc.signalCode) return this.proc.exitCode ?? -1;
    this.signal("SIGTERM");
    const t = setTimeout(() => this.signal("SIGKILL"), ms);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/** Kills whatever a test file left running (call from afterAll). Returns how many were still alive. */
export async function stopAll(): Promise<number> {
  const left = [...running];
  await Promise.all(left.map((s) => s.stop(5_000)));
  return left.length;
}

/** `what` may be a function, so a description holding logs is built when the wait fails, not before. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string)) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await Bun.sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`);
}

export { freePort } from "../../scripts/load/processes.ts";
