// OpenTelemetry traces, exported over OTLP/HTTP (JSON) when OTEL_EXPORTER_OTLP_ENDPOINT is set. With it
// unset the SDK is never imported and every helper here calls its function straight away: tracing
// off costs one `if` per span site.
// The W3C trace context (`traceparent`, `tracestate`) comes from the POST's headers (or a new trace
// starts), travels in the request message's user properties to the worker, and from the worker's
// span in the result message's properties, so one trace id runs HTTP -> RocketMQ -> worker -> LLM ->
// result. Span names and attributes follow the semantic conventions for messaging (RocketMQ) and
// GenAI; task ids are span attributes, never metric labels.
import {
  context, diag, DiagLogLevel, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags,
  type Attributes, type Context, type Span, type TextMapGetter, type Tracer,
} from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace";
import { silentLogger, type Logger } from "../log.ts";
import { countSpansLost } from "./metrics.ts";

let tracer: Tracer | undefined;
let provider: { forceFlush(): Promise<void>; shutdown(): Promise<void> } | undefined;
let logger: Logger = silentLogger;
/** Masks the collector's credentials in a message (lib/observe/tracing-warnings.ts). */
let masked = (text: string) => text;

/** How long the flush at shutdown waits for the collector: a hung one would hold the exit for the exporter's whole timeout. */
const SHUTDOWN_FLUSH_MS = 3_000;

const errorText = (e: unknown) =>
  e instanceof Error ? `${e.message}${e.cause ? `: ${e.cause instanceof Error ? e.cause.message : String(e.cause)}` : ""}` : String(e);

export const tracingOn = () => tracer !== undefined;

/**
 * Loads the SDK and starts exporting to `<endpoint>/v1/traces` (OTLP/HTTP, JSON). No-op without an
 * endpoint. Spans leave in batches every `scheduleDelayMs` (OTEL_BSP_SCHEDULE_DELAY); `ratio` of the new
 * traces are recorded (OTEL_TRACES_SAMPLER_ARG); an unrecorded one still carries its context along.
 */
export async function initTracing(
  endpoint: string | undefined, serviceName: string, log?: Logger, opts: { scheduleDelayMs?: number; ratio?: number } = {},
): Promise<void> {
  if (!endpoint || tracer) return;
  const [
    { TracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler }, { OTLPTraceExporter }, { resourceFromAttributes },
    { AsyncLocalStorageContextManager }, { W3CTraceContextPropagator, setGlobalErrorHandler }, { endpointForLog, exporterSecrets, mask, rateLimitedWarnings },
  ] = await Promise.all([
    // sdk-trace 3 is sdk-trace-base's successor (2.x re-exports it); the exporter 0.301 is built on it.
    import("@opentelemetry/sdk-trace"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/context-async-hooks"),
    import("@opentelemetry/core"),
    import("./tracing-warnings.ts"),
  ]);
  const url = `${endpoint.replace(/\/+$/, "")}/v1/traces`;
  logger = log ?? silentLogger;
  // Lost spans show in our log (lib/observe/tracing-warnings.ts): a failed export reaches OpenTelemetry's
  // global error handler, a full span queue its diag logger; both are silent by default.
  const secrets = exporterSecrets(endpoint);
  masked = (text) => mask(text, secrets);
  const warn = rateLimitedWarnings(logger, secrets);
  setGlobalErrorHandler((e) => warn("export", "spans not exported", errorText(e)));
  const sdkWarning = (m: string, ...rest: unknown[]) => {
    // The batch processor says how many spans it dropped only in this text (sdk-trace 3.1).
    const dropped = /^Dropped (\d+) spans because maxQueueSize reached/.exec(m);
    if (dropped) countSpansLost("queue_full", Number(dropped[1]));
    warn(`sdk ${m.replace(/\d+/g, "N").slice(0, 60)}`, "tracing SDK warning", [m, ...rest.map(String)].join(" "));
  };
  diag.setLogger({ error: sdkWarning, warn: sdkWarning, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  const p = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName }),
    // A trace the caller started keeps the caller's decision; a new one is recorded with probability `ratio`.
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.ratio ?? 1) }),
    spanProcessors: [new BatchSpanProcessor({ exporter: countingLosses(new OTLPTraceExporter({ url })), scheduledDelayMillis: opts.scheduleDelayMs ?? 5_000 })],
  });
  // The active span follows async calls (AsyncLocalStorage): the agent's LLM calls find their run's span.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(p);
  provider = p;
  tracer = trace.getTracer("agent-prod");
  logger.info("tracing on: spans exported over OTLP/HTTP", { url: endpointForLog(url), service: serviceName, sampled: opts.ratio ?? 1 });
}

/** The exporter, counting the spans of every batch it failed to deliver (agent_trace_spans_lost_total). */
function countingLosses(e: SpanExporter): SpanExporter {
  return {
    export: (spans, done) =>
      e.export(spans, (r) => {
        if (r.code !== 0) countSpansLost("export_failed", spans.length); // 0: ExportResultCode.SUCCESS
        done(r);
      }),
    shutdown: () => e.shutdown(),
    forceFlush: () => e.forceFlush?.() ?? Promise.resolve(),
  };
}

/** Exports the spans ended so far (benchmarks; shutdown flushes by itself). */
export async function flushTracing(): Promise<void> {
  await provider?.forceFlush();
}

/**
 * Flushes and stops the exporter (shutdown), waiting `waitMs` at most: with the collector hung or
 * away, the spans still queued are lost (and logged as such) rather than holding the exit.
 */
export async function shutdownTracing(waitMs = SHUTDOWN_FLUSH_MS): Promise<void> {
  const p = provider;
  tracer = undefined;
  provider = undefined;
  if (!p) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flushed = await Promise.race([
    p.shutdown().then(() => true, (e) => (logger.warn("spans not flushed at shutdown", { error: masked(errorText(e)) }), true)),
    new Promise<false>((r) => (timer = setTimeout(() => r(false), waitMs))),
  ]);
  clearTimeout(timer);
  if (!flushed) logger.warn("spans not flushed at shutdown", { error: `the collector did not take them within ${waitMs} ms` });
}

function failed(s: Span, e: unknown) {
  const err = e instanceof Error ? e : new Error(String(e));
  s.recordException(err);
  s.setStatus({ code: SpanStatusCode.ERROR, message: err.message.slice(0, 200) });
}

/**
 * Runs `fn` in a span (a child of `parent`, or of the active context); the span ends when its
 * promise settles, with an error status if it rejected. `onResult` may add attributes from the result.
 * `fn` gets the span's context. `activate: false` does not make it the active context for `fn`'s
 * async calls: the caller hands it on itself (`parent` of the next span, `traceParent` of a send).
 * Why: while a context is active, Bun carries it through every await and I/O callback under it (an
 * AsyncContextFrame each), which cost a worker ~5 % of its CPU with the context active around the
 * whole message; only the agent's run, whose LLM calls find their span by it, needs it active.
 */
export function inSpan<T>(
  name: string,
  fn: (ctx: Context | undefined) => Promise<T>,
  opts: { kind?: SpanKind; attributes?: Attributes; parent?: Context; activate?: boolean; onResult?: (s: Span, r: T) => void } = {},
): Promise<T> {
  if (!tracer) return fn(undefined);
  const activate = opts.activate ?? true;
  const parent = opts.parent ?? context.active();
  // In a trace that is not recorded (sampled out here or by the caller) a child would not be recorded
  // either: skip making it. The parent's context goes on, so messages still carry the trace id.
  const within = trace.getSpanContext(parent);
  if (within && (within.traceFlags & TraceFlags.SAMPLED) === 0)
    return activate && opts.parent ? context.with(parent, fn, undefined, parent) : fn(parent);
  const s = tracer.startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes }, parent);
  const mine = trace.setSpan(parent, s);
  const run = async () => {
    try {
      const r = await fn(mine);
      opts.onResult?.(s, r);
      return r;
    } catch (e) {
      failed(s, e);
      throw e;
    } finally {
      s.end();
    }
  };
  return activate ? context.with(mine, run) : run();
}

/** A context (default: the active one) as message properties (`traceparent`, maybe `tracestate`); undefined when off. */
export function traceProperties(of?: Context): Record<string, string> | undefined {
  if (!tracer) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(of ?? context.active(), carrier);
  return Object.keys(carrier).length ? carrier : undefined;
}

const mapGetter: TextMapGetter<Map<string, string> | undefined> = {
  keys: (c) => (c ? [...c.keys()] : []),
  get: (c, k) => c?.get(k),
};
const headersGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, k) => h.get(k) ?? undefined,
};

/** The context carried by a received message's properties (a new trace when none). */
export function contextOfMessage(properties: Map<string, string> | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, properties, mapGetter);
}

/** The context of an incoming HTTP request's `traceparent` (a new trace when none). */
export function contextOfHeaders(headers: Headers): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headersGetter);
}

export { SpanKind, SpanStatusCode, type Context };
