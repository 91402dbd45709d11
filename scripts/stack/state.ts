// The stack folder and the processes the stack started.
// A pid alone is not an identity (pids are reused), so each record also keeps the process's start
// time from /proc and a string its command line must contain; `down` kills only a process that
// still matches both, so it can never hit an unrelated process or a Redis it did not start.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export type ProcRecord = {
  name: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot). */
  startTime: string;
  /** A substring of /proc/<pid>/cmdline, normally a path inside the stack folder. */
  match: string;
  /** File receiving the process's stdout and stderr. */
  out: string;
};

const REPO = resolve(import.meta.dir, "../..");

/** `--dir DIR`, else STACK_DIR, else <repo>/.stack (gitignored). */
export function stackDir(args: string[], env = process.env): string {
  const i = args.indexOf("--dir");
  if (i >= 0) {
    const v = args[i + 1];
    if (!v) throw new Error("--dir needs a folder");
    return resolve(v);
  }
  return resolve(env.STACK_DIR || join(REPO, ".stack"));
}

export const repoRoot = REPO;

function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: parse from the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0]!, startTime: rest[19]! };
  } catch {
    return undefined;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** Threads listed for a process, the (zombie) leader included; 0 when it is gone. */
function threadCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

/**
 * The recorded process (same pid and start time) still runs, or is still dying; says nothing of what
 * it execs. A killed JVM's main thread turns zombie first while its other threads still exit and
 * hold its ports open: it is gone only when the zombie is alone (CI once saw a killed proxy's ports
 * answer after its leader was a zombie).
 */
export function isAlive(rec: ProcRecord): boolean {
  const st = procStat(rec.pid);
  if (!st || st.startTime !== rec.startTime) return false;
  return (st.state !== "Z" && st.state !== "X") || threadCount(rec.pid) > 1;
}

/** True while the recorded process is alive (or dying) and is still the one we started. */
export function isOurs(rec: ProcRecord): boolean {
  if (!isAlive(rec)) return false;
  // A dying process has no command line any more; its pid and start time still identify it.
  const cl = cmdline(rec.pid);
  return cl === "" || cl.includes(rec.match);
}

export class StackState {
  constructor(readonly dir: string) {}

  path(...parts: string[]) {
    return join(this.dir, ...parts);
  }
  ensure(...parts: string[]) {
    const p = this.path(...parts);
    mkdirSync(p, { recursive: true });
    return p;
  }
  private recordFile(name: string) {
    return this.path("pids", `${name}.json`);
  }
  read(name: string): ProcRecord | undefined {
    try {
      return JSON.parse(readFileSync(this.recordFile(name), "utf8")) as ProcRecord;
    } catch {
      return undefined;
    }
  }
  write(rec: ProcRecord) {
    this.ensure("pids");
    writeFileSync(this.recordFile(rec.name), JSON.stringify(rec, null, 2) + "\n");
  }
  forget(name: string) {
    rmSync(this.recordFile(name), { force: true });
  }
  /** The record only if its process is still ours and alive. */
  live(name: string): ProcRecord | undefined {
    const rec = this.read(name);
    return rec && isOurs(rec) ? rec : undefined;
  }
}

/**
 * Starts a process in its own session (it survives the CLI and ignores the terminal's Ctrl-C),
 * with stdout/stderr appended to `out`, and returns its record.
 */
export function spawnDetached(name: string, cmd: string[], opts: { cwd: string; out: string; match: string; env?: Record<string, string> }): ProcRecord {
  const fd = openSync(opts.out, "a");
  try {
    const proc = Bun.spawn(cmd, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    proc.unref();
    // /proc/<pid>/stat exists as soon as spawn returns (fork happened); the exec may still be
    // under way, which changes the cmdline but never the start time.
    const st = procStat(proc.pid);
    return { name, pid: proc.pid, startTime: st?.startTime ?? "", match: opts.match, out: opts.out };
  } finally {
    closeSync(fd);
  }
}

/** TERM, wait up to `graceMs`, then KILL. Returns what happened, for the CLI to print. */
// The proxy+broker JVM's shutdown hooks take 10-14 s here (unregister, then each service thread
// is stopped in turn); 30 s leaves room before the KILL that would make the next start recover.
export async function stopProcess(rec: ProcRecord, graceMs = 30_000): Promise<"not running" | "stopped" | "killed"> {
  if (!isOurs(rec)) return "not running";
  process.kill(rec.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isOurs(rec)) return "stopped";
    await Bun.sleep(100);
  }
  try {
    process.kill(rec.pid, "SIGKILL");
  } catch {}
  for (let i = 0; i < 50 && isOurs(rec); i++) await Bun.sleep(100);
  if (isOurs(rec)) throw new Error(`${rec.name} (pid ${rec.pid}) survived SIGKILL`);
  return "killed";
}

/** Last `lines` lines of a file, or a note that it does not exist. */
export function tail(file: string, lines = 40): string {
  if (!existsSync(file)) return `(no ${file})`;
  const text = readFileSync(file, "utf8");
  return text.split("\n").slice(-lines - 1).join("\n");
}

/**
 * Serialises up/down on one stack folder. Several test runs (other engineers, CI steps) may call
 * `up` at once: without this, two of them see the ports closed, both start a JVM, one dies on a bind
 * error and its record overwrites the live one, leaving a server that `down` no longer knows.
 * The lock is a file holding the owner's pid and start time; a dead owner's lock is taken over.
 */
export async function withLock<T>(st: StackState, what: string, fn: () => Promise<T>, waitMs = 300_000): Promise<T> {
  st.ensure();
  const file = st.path("lock");
  const me = procStat(process.pid);
  const mine = JSON.stringify({ name: "lock", pid: process.pid, startTime: me?.startTime ?? "", match: "", out: "" });
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      const fd = openSync(file, "wx");
      writeFileSync(fd, mine);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let owner: ProcRecord | undefined;
      try {
        owner = JSON.parse(readFileSync(file, "utf8")) as ProcRecord;
      } catch {}
      // An unreadable lock may be one being written this instant: only a readable dead owner is stale.
      if (owner && !isAlive(owner)) {
        rmSync(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${what}: ${file} still held by pid ${owner?.pid ?? "?"} after ${waitMs / 1000} s`);
      if (!told && owner) console.log(`  waiting for pid ${owner.pid}, which holds ${file}`);
      told = true;
      await Bun.sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
