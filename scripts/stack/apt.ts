// Debian packages the stack and the tests need (redis-server, chromium): installed with apt-get when
// missing and this process is root (a fresh CI machine or container), as `.ci/run` would; otherwise
// the caller says what to install.

/** True once `bin` is on PATH, installing Debian's `pkg` first when it is not and we are root. */
export function ensureDebianPackage(bin: string, pkg: string, log: (s: string) => void): boolean {
  if (Bun.which(bin)) return true;
  if (process.getuid?.() !== 0 || !Bun.which("apt-get")) return false;
  log(`  ${bin} missing, running: apt-get update && apt-get install -y ${pkg}`);
  for (const cmd of [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", pkg]]) {
    const r = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (r.exitCode !== 0) throw new Error(`\`${cmd.join(" ")}\` failed (exit ${r.exitCode})`);
  }
  return Boolean(Bun.which(bin));
}
