// `bun scripts/load/profile-summary.ts <a.cpuprofile | dir> [<b.cpuprofile | dir>] [--top 25]`
// A CPU profile (`bun --cpu-prof`, e.g. from `observe-overhead.ts --cpu-prof DIR`) as self samples
// summed by where the code lives: an npm package, one of our files, or a native function by name.
// Bun's own markdown summary ranks single functions, and under load its call attribution scatters
// one cost over many of them (a promise's machinery, a native call); the sums by package are what
// told tracing's costs apart (docs/observability.md, "Overhead"). With two profiles: b minus a, by
// place, largest first, not normalised: run both on the same number of tasks.
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { cliArgs, usageError, wholeNumbers } from "./cli.ts";

const USAGE = "usage: bun scripts/load/profile-summary.ts <a.cpuprofile | dir> [<b.cpuprofile | dir>] [--top 25]";
const ROOT = join(import.meta.dir, "..", "..");

interface Profile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  samples: number[];
}

/** The profile a path names: the file, or the only .cpuprofile in a directory. */
function profileFile(path: string): string {
  if (!statSync(path).isDirectory()) return path;
  const found = readdirSync(path).filter((f) => f.endsWith(".cpuprofile"));
  if (found.length !== 1) throw new Error(`${path}: ${found.length} .cpuprofile files, expected one`);
  return join(path, found[0]!);
}

/** Where a frame's code lives: `@scope/pkg` or `pkg`, `ours:<file>`, `native:<function>`, or a runtime module. */
export function placeOf(frame: { functionName: string; url: string }): string {
  const url = frame.url.replace(/^file:\/\//, "");
  if (!url) return `native:${frame.functionName || "(anonymous)"}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith(ROOT)) return `ours:${relative(ROOT, url)}`;
  return url.replace(/:\d+$/, "");
}

/** Self samples by place, and the total. */
export function samplesByPlace(p: Profile): { total: number; by: Map<string, number> } {
  const place = new Map(p.nodes.map((n) => [n.id, placeOf(n.callFrame)]));
  const by = new Map<string, number>();
  for (const id of p.samples) {
    const k = place.get(id) ?? "?";
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  return { total: p.samples.length, by };
}

async function main() {
  const { values, positionals: paths } = cliArgs({ top: { type: "string", default: "25" } }, USAGE);
  const { top } = wholeNumbers({ top: values.top }, USAGE, { top: 1 });
  if (paths.length < 1 || paths.length > 2) usageError("one or two profiles expected", USAGE);
  const read = async (path: string) => samplesByPlace((await Bun.file(profileFile(path)).json()) as Profile);
  let summaries: ReturnType<typeof samplesByPlace>[];
  try {
    summaries = await Promise.all(paths.map(read));
  } catch (e) {
    console.error(`profile-summary: ${(e as Error).message}`);
    process.exit(1);
  }
  const [a, b] = summaries as [ReturnType<typeof samplesByPlace>, ReturnType<typeof samplesByPlace>?];
  if (!b) {
    console.log(`${a.total} samples`);
    for (const [k, n] of [...a.by].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${String(n).padStart(7)}  ${k}`);
    return;
  }
  console.log(`${a.total} -> ${b.total} samples (${b.total - a.total >= 0 ? "+" : ""}${b.total - a.total})`);
  const places = new Set([...a.by.keys(), ...b.by.keys()]);
  const delta = [...places].map((k) => [k, (b.by.get(k) ?? 0) - (a.by.get(k) ?? 0)] as const);
  for (const [k, d] of delta.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])).slice(0, top))
    console.log(`${(d >= 0 ? "+" : "") + d}`.padStart(7) + `  ${k}`);
}

if (import.meta.main) await main();
