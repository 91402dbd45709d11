// Structured logs: one JSON object a line in production (not a terminal, or LOG_FORMAT=json),
// a readable line in a terminal. Fields named like secrets are masked, whatever the caller passes.
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /pass(word)?|secret|token|api_?key|authorization|credential/i;

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LogOptions {
  level?: Level;
  format?: "json" | "pretty" | "auto";
  write?: (line: string) => void;
}

function clean(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    if (SECRET_FIELD.test(k)) out[k] = "[redacted]";
    else if (v instanceof Error) out[k] = { name: v.name, message: v.message, ...(v.cause ? { cause: String(v.cause) } : {}) };
    else out[k] = v;
  }
  return out;
}

export function createLogger(opts: LogOptions = {}, base: Record<string, unknown> = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const json = opts.format === "json" || (opts.format !== "pretty" && !process.stderr.isTTY);
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const all = clean({ ...base, ...fields });
    if (json) {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }));
    } else {
      const extra = Object.entries(all).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra.length ? " " + extra.join(" ") : ""}`);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/**
 * Warnings that repeat (a server that is down fails every call, several times a second): the first of
 * a kind is logged at once, then at most one every `everyMs`, with how many of that kind were held
 * back since (`held_back`). `fields` is only called for a line that is logged.
 */
export function rateLimited(log: Logger, everyMs = 60_000, now: () => number = Date.now) {
  const kinds = new Map<string, { at: number; held: number }>();
  return (kind: string, msg: string, fields: () => Record<string, unknown> = () => ({})): boolean => {
    const k = kinds.get(kind);
    const t = now();
    if (k && t - k.at < everyMs) {
      k.held++;
      return false;
    }
    log.warn(msg, { ...fields(), ...(k?.held ? { held_back: k.held } : {}) });
    kinds.set(kind, { at: t, held: 0 });
    return true;
  };
}

/** A logger that drops everything: for tests and for libraries that must stay quiet. */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });
