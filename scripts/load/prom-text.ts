// A reader of Prometheus text format 0.0.4 (what prom-client serves), for load.ts's --metrics check:
// prom-client writes the format but has no parser. Sample lines only (`name{labels} value [timestamp]`);
// HELP/TYPE comments and blank lines are skipped. Enough for counters; not a validating parser.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class PromTextError extends Error {
  override name = "PromTextError";
}

// A label value is a quoted string with \\, \" and \n escapes; it may hold `}` or `,`.
const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/g;

const unescape = (s: string) => s.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));

/** The format's special values (+Inf, -Inf, NaN) are not JavaScript's spellings. */
function value(s: string): number {
  if (s === "+Inf" || s === "Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  const n = Number(s);
  if (Number.isNaN(n)) throw new PromTextError(`not a sample value: ${JSON.stringify(s)}`);
  return n;
}

export function parsePromText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) throw new PromTextError(`not a Prometheus sample line: ${JSON.stringify(line.slice(0, 200))}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = unescape(l[2]!);
    out.push({ name: m[1]!, labels, value: value(m[3]!) });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include every pair of `where` (0 when there are none). */
export function sumOf(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) if (s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v)) total += s.value;
  return total;
}
