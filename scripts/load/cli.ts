// Options of the scripts (load.ts, chaos.ts, compare.ts, observe-overhead.ts, load/profile-summary.ts):
// parsed with node's strict parseArgs; --help prints the usage and exits 0; a bad option or value
// prints what was wrong and the usage and exits 2, never a stack trace. The parse functions throw
// ArgsError (testable); the entries turn it into the exit.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

type Values<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{ options: O }>>["values"];

/** A bad option or value; an empty message: --help was asked for. */
export class ArgsError extends Error {
  override name = "ArgsError";
}

export function usageError(message: string, usage: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

/** The values of `options` in `argv` (a `help` flag, -h, is added); throws ArgsError. */
export function strictArgs<const O extends ParseArgsOptionsConfig>(argv: string[], options: O): Values<O> {
  return strictArgsWith(argv, options, false).values;
}

/** strictArgs, and the positional arguments when `allowPositionals` (else one is an ArgsError). */
function strictArgsWith<const O extends ParseArgsOptionsConfig>(argv: string[], options: O, allowPositionals: boolean) {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals });
  } catch (e) {
    throw new ArgsError(e instanceof Error ? e.message : String(e));
  }
  if (parsed.values.help) throw new ArgsError("");
  delete parsed.values.help;
  return { values: parsed.values as Values<O>, positionals: parsed.positionals };
}

/** `parse()`'s result, or the usage and exit: 0 after --help (usage on `helpTo`), 2 after an ArgsError. */
export function parseOrExit<T>(parse: () => T, usage: string, helpTo: "stdout" | "stderr" = "stdout"): T {
  try {
    return parse();
  } catch (e) {
    if (!(e instanceof ArgsError)) throw e;
    if (e.message) usageError(e.message, usage);
    (helpTo === "stdout" ? console.log : console.error)(usage);
    process.exit(0);
  }
}

/** For an entry: the values of `options` in process.argv, or the usage and exit. */
export function cliOptions<const O extends ParseArgsOptionsConfig>(options: O, usage: string): Values<O> {
  return parseOrExit(() => strictArgs(process.argv.slice(2), options), usage);
}

/** cliOptions for an entry that also takes positional arguments (e.g. file names). */
export function cliArgs<const O extends ParseArgsOptionsConfig>(options: O, usage: string): { values: Values<O>; positionals: string[] } {
  return parseOrExit(() => strictArgsWith(process.argv.slice(2), options, true), usage);
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
