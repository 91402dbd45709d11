// The jars of tests/interop/pom.xml (the official RocketMQ Java client, Jackson), resolved by Maven
// into the cache folder by the tests themselves: `${XDG_CACHE_HOME:-~/.cache}/agent-prod/
// java-interop-<hash of the pom>`, renamed into place when complete. Then single-file Java programs
// of tests/interop/ run on them with the machine's Java 17.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const POM = join(import.meta.dir, "..", "interop", "pom.xml");

export function javaJarsDir(env = process.env): string {
  const hash = createHash("sha256").update(readFileSync(POM)).digest("hex").slice(0, 12);
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "agent-prod", `java-interop-${hash}`);
}

let ready: Promise<string> | undefined;

/** The class path (every jar), after resolving them with Maven on first use. */
export function interopClassPath(): Promise<string> {
  ready ??= (async () => {
    const dir = javaJarsDir();
    if (!existsSync(join(dir, "complete"))) {
      if (!Bun.which("mvn")) throw new Error("mvn not found on PATH: the Java interop test resolves its jars with Maven");
      const tmp = `${dir}.partial-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(join(dir, ".."), { recursive: true });
      const started = Date.now();
      const p = Bun.spawn(["mvn", "-q", "-B", "-f", POM, "dependency:copy-dependencies", `-DoutputDirectory=${tmp}`], {
        stdout: "pipe", stderr: "pipe", stdin: "ignore",
      });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      if (code !== 0) throw new Error(`mvn failed (exit ${code}) resolving ${POM}:\n${(out + err).slice(-3000)}`);
      writeFileSync(join(tmp, "complete"), `${new Date().toISOString()}\n`);
      try {
        renameSync(tmp, dir);
        console.error(`[java] jars of ${POM} resolved into ${dir} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true }); // another test process finished first
        if (!existsSync(join(dir, "complete"))) throw e;
      }
    }
    return readdirSync(dir).filter((f) => f.endsWith(".jar")).map((f) => join(dir, f)).join(":");
  })();
  return ready;
}

/** Runs `java -cp <jars> tests/interop/<file> args...` (source-file mode); user.home keeps the client's logs out of ~. */
export async function runJava(file: string, args: string[], home: string, timeoutMs = 120_000) {
  const cp = await interopClassPath();
  const p = Bun.spawn(["java", `-Duser.home=${home}`, "-cp", cp, join(import.meta.dir, "..", "interop", file), ...args], {
    stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, HOME: home },
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  const lines = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { code, lines, out, err };
}
