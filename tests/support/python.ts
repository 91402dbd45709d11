// A Python virtualenv with the interop tests' packages (tests/interop/requirements.txt, every version
// pinned), made by the tests themselves in the cache folder: `${XDG_CACHE_HOME:-~/.cache}/agent-prod/
// venv-<hash of requirements.txt>`. Built beside its final place and renamed into it when complete,
// so an interrupted install is never used, and test processes running at once do not share a half-made
// one. Programs run as `<venv>/bin/python -m ...`: pip's script wrappers name the folder they were
// built in, which the rename changes.
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
