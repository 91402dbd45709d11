// The servers of a stack folder (bun scripts/stack.ts) that chaos may hit: Redis and the proxy+broker
// JVM. Only processes the stack itself started and recorded (pid + start time + command line, see
// scripts/stack/state.ts) are ever signalled; a Redis the stack found already running is refused.
import { join } from "node:path";
import { isOurs, repoRoot, StackState, stopProcess } from "../stack/state.ts";

export type Server = "redis" | "broker";
const RECORD: Record<Server, string> = { redis: "redis", broker: "proxy" };

export class StackServers {
  readonly st: StackState;
  /** pids currently SIGSTOPped, resumed by resumeAll() whatever happens */
  readonly #paused = new Set<number>();

  constructor(
    dir: string,
    private readonly env: Record<string, string | undefined>,
  ) {
    this.st = new StackState(dir);
  }

  pid(s: Server): number | undefined {
    const rec = this.st.read(RECORD[s]);
    return rec && isOurs(rec) ? rec.pid : undefined;
  }

  /** Why a server cannot be hit (not started by this stack), or undefined when it can. */
  refusal(s: Server): string | undefined {
    if (this.pid(s) !== undefined) return undefined;
    return `${s} is not a running process of the stack in ${this.st.dir} (start it with \`bun scripts/stack.ts up --dir ${this.st.dir}\`; a server the stack did not start is never touched)`;
  }

  kill(s: Server) {
    const pid = this.pid(s);
    if (pid !== undefined) process.kill(pid, "SIGKILL");
  }

  pause(s: Server) {
    const pid = this.pid(s);
    if (pid === undefined) return;
    this.#paused.add(pid);
    process.kill(pid, "SIGSTOP");
  }

  resume(s: Server) {
    const pid = this.pid(s);
    if (pid === undefined) return;
    process.kill(pid, "SIGCONT");
    this.#paused.delete(pid);
  }

  resumeAll() {
    for (const pid of this.#paused) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {}
    }
    this.#paused.clear();
  }

  /** SIGTERM and wait (the JVM's shutdown hooks take 10-15 s), as `stack down` does for one part. */
  async stopGracefully(s: Server) {
    const rec = this.st.read(RECORD[s]);
    if (rec && isOurs(rec)) await stopProcess(rec);
  }

  /** `bun scripts/stack.ts up --dir DIR`: starts whatever part is missing; throws with its output on failure. */
  async up(): Promise<void> {
    const p = Bun.spawn(["bun", join(repoRoot, "scripts", "stack.ts"), "up", "--dir", this.st.dir], {
      cwd: repoRoot,
      env: this.env,
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`stack up failed (exit ${code}):\n${out}${err}`);
  }
}
