// Starts what a process observes, from config: metrics (the API: METRICS_ENABLED; a worker: also
// WORKER_METRICS_PORT, where it serves them) and tracing (OTEL_EXPORTER_OTLP_ENDPOINT). Call it before
// building the app or the consumer loops: they ask once, at construction, whether anything is on.
import { timingSafeEqual, createHash } from "node:crypto";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { exposeConsumerLag } from "./lag.ts";
import { exposition, initMetrics } from "./metrics.ts";
import { initTracing, shutdownTracing } from "./tracing.ts";
import { pathOf } from "../http/request-url.ts";

export { observeHandler } from "./messaging.ts";

export interface Observability {
  /** the worker's metrics port, when it serves one */
  port?: number;
  /** stops the metrics server and the lag reader, flushes the spans */
  stop(): Promise<void>;
}

export async function startObservability(cfg: Config, service: "api" | "worker", log: Logger): Promise<Observability> {
  const stops: (() => unknown)[] = [];
  let port: number | undefined;
  const metricsOn = cfg.METRICS_ENABLED && (service === "api" || cfg.WORKER_METRICS_PORT !== undefined);
  if (metricsOn) {
    await initMetrics();
    // The backlog is the fleet's: read by the API, which an operator scrapes anyway.
    if (service === "api") stops.push(exposeConsumerLag(cfg, log));
    else {
      const server = serveMetrics(cfg, cfg.WORKER_METRICS_HOST, cfg.WORKER_METRICS_PORT!);
      port = server.port;
      stops.push(() => server.stop(true));
      log.info("worker metrics listening", { url: `http://${cfg.WORKER_METRICS_HOST}:${port}/metrics` });
    }
  }
  if (cfg.OTEL_EXPORTER_OTLP_ENDPOINT) {
    await initTracing(cfg.OTEL_EXPORTER_OTLP_ENDPOINT, cfg.OTEL_SERVICE_NAME ?? `agent-prod-${service}`, log, {
      scheduleDelayMs: cfg.OTEL_BSP_SCHEDULE_DELAY,
      ratio: cfg.OTEL_TRACES_SAMPLER_ARG,
    });
    stops.push(shutdownTracing);
  }
  return {
    port,
    async stop() {
      for (const s of stops) await Promise.resolve().then(s).catch(() => {});
    },
  };
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * With METRICS_TOKEN set: a check of `Authorization: Bearer <token>` (constant time, over digests so
 * that lengths do not show either); unset: undefined, /metrics is open.
 */
export function metricsGuard(cfg: Pick<Config, "METRICS_TOKEN">): ((r: Request) => boolean) | undefined {
  if (!cfg.METRICS_TOKEN) return undefined;
  const expected = digest(cfg.METRICS_TOKEN);
  return (r) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(r.headers.get("authorization") ?? "");
    return !!m && timingSafeEqual(digest(m[1]!), expected);
  };
}

export const METRICS_CHALLENGE = { "www-authenticate": 'Bearer realm="agent-prod-metrics"' };
export const METRICS_UNAUTHORIZED = "METRICS_TOKEN is set: Authorization: Bearer <token> is required";

const json = (status: number, error: string, message: string, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ error, message }), { status, headers: { "content-type": "application/json", ...headers } });

/** A worker's own small HTTP server: GET /metrics only (METRICS_TOKEN applies as on the API). */
function serveMetrics(cfg: Config, hostname: string, port: number) {
  const allowed = metricsGuard(cfg);
  return Bun.serve({
    hostname,
    port,
    async fetch(req) {
      const path = pathOf(req.url); // never throws on a bad Host header
      if (path !== "/metrics") return json(404, "not_found", `no route for ${req.method} ${path.slice(0, 200)}`);
      if (req.method !== "GET" && req.method !== "HEAD") return json(405, "method_not_allowed", `${req.method} is not allowed on /metrics; allowed: GET, HEAD`, { allow: "GET, HEAD" });
      if (allowed && !allowed(req)) return json(401, "unauthorized", METRICS_UNAUTHORIZED, METRICS_CHALLENGE);
      const { contentType, body } = await exposition();
      return new Response(req.method === "HEAD" ? null : body, { headers: { "content-type": contentType } });
    },
  });
}
