// The RocketMQ server jars, resolved by Maven from scripts/stack/pom.xml into a cache outside git.
// The download goes to a temporary folder that is renamed into place, and the marker file is
// written last: an interrupted download is never mistaken for a complete one.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const ROCKETMQ_VERSION = "5.3.3";
const POM = join(import.meta.dir, "pom.xml");

export function cacheRoot(env = process.env): string {
  const base = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "agent-prod", `rocketmq-${ROCKETMQ_VERSION}`);
}

export const libDir = (env = process.env) => join(cacheRoot(env), "lib");
const markerFile = (env = process.env) => join(cacheRoot(env), "complete");

export function jarsCached(env = process.env): boolean {
  return existsSync(markerFile(env)) && existsSync(libDir(env));
}

function need(cmd: string, hint: string) {
  if (!Bun.which(cmd)) throw new Error(`${cmd} not found on PATH: ${hint}`);
}

/** Java 17+ is what RocketMQ 5.3.3 is tested with here; older JVMs fail on the --add-opens flags. */
export function checkJava() {
  need("java", "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jre-headless)");
  const r = Bun.spawnSync(["java", "-version"], { stdout: "pipe", stderr: "pipe" });
  const text = r.stderr.toString() + r.stdout.toString();
  const m = /version "(\d+)(?:\.(\d+))?/.exec(text);
  const major = m ? (m[1] === "1" ? Number(m[2]) : Number(m[1])) : NaN;
  if (!(major >= 17)) throw new Error(`java 17+ needed to run RocketMQ, found: ${text.split("\n")[0] || "nothing"}`);
}

/** Returns the lib folder, downloading the jars first when the cache lacks them. */
export async function ensureJars(log: (s: string) => void, env = process.env): Promise<string> {
  const lib = libDir(env);
  if (jarsCached(env)) return lib;
  need("mvn", "install Maven 3.6+ (Debian: apt-get install -y maven), or copy the jars into " + lib);
  const root = cacheRoot(env);
  mkdirSync(root, { recursive: true });
  const tmp = join(root, `lib.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  log(`downloading RocketMQ ${ROCKETMQ_VERSION} jars with Maven into ${lib} (once; later runs reuse them)`);
  const started = Date.now();
  const proc = Bun.spawn(
    ["mvn", "-q", "-B", "-f", POM, "dependency:copy-dependencies", `-DoutputDirectory=${tmp}`],
    { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    const text = (out + err).trim().split("\n").slice(-30).join("\n");
    throw new Error(`mvn failed (exit ${code}) resolving ${POM}:\n${text}`);
  }
  const jars = readdirSync(tmp).filter((f) => f.endsWith(".jar"));
  if (!jars.some((f) => f.startsWith("rocketmq-proxy-")) || !jars.some((f) => f.startsWith("rocketmq-namesrv-")))
    throw new Error(`mvn finished but ${tmp} lacks the rocketmq-proxy/namesrv jars`);
  rmSync(lib, { recursive: true, force: true });
  renameSync(tmp, lib);
  writeFileSync(markerFile(env), `${jars.length} jars, ${new Date().toISOString()}\n`);
  log(`  ${jars.length} jars in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return lib;
}
