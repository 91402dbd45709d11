// A Python virtualenv with the interop tests' packages (tests/interop/requirements.txt, every version
// pinned), made by the tests themselves in the cache folder: `${XDG_CACHE_HOME:-~/.cache}/agent-prod/
// venv-<hash of requirements.txt>`. Built beside its final place and renamed into it when complete,
// so an interrupted install is never used, and test processes running at once do not share a half-made
// one. Programs run as `<venv>/bin/python -m ...`: pip's script wrappers name the folder they were
// built in, which the rename changes.
import type { Subprocess } from "bun";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const REQUIREMENTS = join(import.meta.dir, "..", "interop", "requirements.txt");

export function venvDir(env = process.env): string {
  const hash = createHash("sha256").update(readFileSync(REQUIREMENTS)).digest("hex").slice(0, 12);
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "agent-prod", `venv-${hash}`);
}

function run(cmd: string[], what: string) {
  const started = Date.now();
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" } });
  if (p.exitCode !== 0)
    throw new Error(`${what} failed (exit ${p.exitCode}): ${cmd.join(" ")}\n${(p.stdout.toString() + p.stderr.toString()).slice(-3000)}`);
  return Date.now() - started;
}

let ready: Promise<string> | undefined;

/** The venv's python, after installing the packages on first use (about 20 s; cached after). */
export function pythonWithPackages(): Promise<string> {
  ready ??= (async () => {
    const dir = venvDir();
    const python = join(dir, "bin", "python");
    if (existsSync(join(dir, "complete"))) return python;
    const python3 = Bun.which("python3");
    if (!python3) throw new Error("python3 not found on PATH: the interop tests need Python 3.9+ with venv");
    const tmp = `${dir}.partial-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(dir, ".."), { recursive: true });
    const ms =
      run([python3, "-m", "venv", tmp], "python3 -m venv (Debian: apt-get install python3-venv)") +
      run([join(tmp, "bin", "python"), "-m", "pip", "install", "-q", "--no-input", "-r", REQUIREMENTS], "pip install");
    await Bun.write(join(tmp, "complete"), `${new Date().toISOString()}\n`);
    try {
      renameSync(tmp, dir);
      console.error(`[python] packages of ${REQUIREMENTS} installed into ${dir} in ${(ms / 1000).toFixed(1)} s`);
    } catch (e) {
      // Another test process finished first: use its venv.
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(join(dir, "complete"))) throw e;
    }
    return python;
  })();
  return ready;
}

/** A Python program of tests/interop/ run as a child process; its stdout JSON lines are collected. */
export class PythonProgram {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;

  constructor(python: string, script: string, args: string[], env: Record<string, string>, home: string) {
    // HOME: rocketmq-python-client logs to ~/logs/rocketmq_python; keep that out of the real home.
    this.proc = Bun.spawn([python, join(import.meta.dir, "..", "interop", script), ...args], {
      env: { ...env, HOME: home, PYTHONUNBUFFERED: "1" },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    void this.#read(this.proc.stdout, true);
    void this.#read(this.proc.stderr, false);
  }

  async #read(stream: ReadableStream<Uint8Array>, json: boolean) {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.raw.push(line);
        if (json)
          try {
            this.lines.push(JSON.parse(line));
          } catch {
            /* not one of our lines */
          }
      }
    }
  }

  /** Closes stdin (the worker's signal to stop), then SIGTERM, then SIGKILL; resolves with the exit code. */
  async stop(ms = 20_000): Promise<number> {
    if (this.proc.exitCode !== null) return this.proc.exitCode;
    this.proc.stdin.end();
    const t1 = setTimeout(() => this.proc.kill("SIGTERM"), ms / 2);
    const t2 = setTimeout(() => this.proc.kill("SIGKILL"), ms);
    const code = await this.proc.exited;
    clearTimeout(t1);
    clearTimeout(t2);
    return code;
  }

  tail(n = 30) {
    return this.raw.slice(-n).join("\n");
  }
}
