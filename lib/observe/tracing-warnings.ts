// What the tracing SDK has to say about lost spans, in our log. Left alone, OpenTelemetry reports a
// failed export and a full span queue to its `diag` logger, which is silent until one is set: with the
// collector down, an operator would see nothing and get no traces. Here they become `warn` lines,
// at most one per kind a minute (a collector that is down fails every batch, every few seconds),
// with a count of what was held back. The collector's credentials (the values of
// OTEL_EXPORTER_OTLP_HEADERS / _TRACES_HEADERS, a password in the endpoint URL) are masked wherever
// the SDK's messages would repeat them (it does for a header it cannot use).
import { parseKeyPairsIntoRecord } from "@opentelemetry/core";
import { type Logger, rateLimited } from "../log.ts";

/** The endpoint as it may be logged: no user, password or query. */
export function endpointForLog(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    u.search = "";
    return u.toString();
  } catch {
    return "(not a URL)";
  }
}

/** The secret strings of the exporter's configuration, longest first (so none is left half masked). */
export function exporterSecrets(endpoint: string, env: Record<string, string | undefined> = process.env): string[] {
  const found = new Set<string>();
  for (const name of ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]) {
    const raw = env[name];
    if (!raw) continue;
    for (const v of Object.values(parseKeyPairsIntoRecord(raw))) found.add(v);
    for (const pair of raw.split(",")) {
      const v = pair.slice(pair.indexOf("=") + 1).trim();
      if (pair.includes("=") && v) found.add(v);
    }
  }
  try {
    const u = new URL(endpoint);
    for (const v of [u.password, decodeURIComponent(u.password)]) if (v) found.add(v);
  } catch {
    /* not a URL: nothing in it to mask */
  }
  return [...found].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

export function mask(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("[redacted]");
  return out;
}

/**
 * Logs `warn(kind, detail)` calls as `msg` lines: the first of a kind at once, then at most one a
 * minute, carrying how many of that kind were held back since (`held_back`).
 */
export function rateLimitedWarnings(log: Logger, secrets: readonly string[], now: () => number = Date.now) {
  const warn = rateLimited(log, 60_000, now);
  return (kind: string, msg: string, detail: string) => void warn(kind, msg, () => ({ error: mask(detail, secrets).slice(0, 500) }));
}
