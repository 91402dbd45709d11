// Options of the benchmark scripts (compare.ts, observe-overhead.ts): parsed with node's parseArgs;
// --help prints the usage and exits 0; a bad option or value prints what was wrong and the usage
// and exits 2, never a stack trace.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

type Values<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{ options: O }>>["values"];

export function usageError(message: string, usage: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

/** The parsed values of `options` (a `help` flag, -h, is added). */
export function cliOptions<const O extends ParseArgsOptionsConfig>(options: O, usage: string): Values<O> {
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ options: { ...options, help: { type: "boolean", short: "h", default: false } } }).values;
  } catch (e) {
    usageError(e instanceof Error ? e.message : String(e), usage);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  delete values.help;
  return values as Values<O>;
}

/** Each value as a whole number of at least `min[key] ?? 0`; `--kebab-case` named in the error. */
export function wholeNumbers<K extends string>(raw: Record<K, unknown>, usage: string, min: Partial<Record<K, number>> = {}): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(raw) as K[]) {
    const v = Number(raw[k]);
    const least = min[k] ?? 0;
    if (!Number.isInteger(v) || v < least) usageError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: a whole number >= ${least} expected`, usage);
    out[k] = v;
  }
  return out;
}
