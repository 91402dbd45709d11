// Observability of the HTTP API (docs/observability.md):
// - GET /metrics: Prometheus text (lib/observe/metrics.ts), refreshed consumer lag included. Served
//   without a key like /healthz unless METRICS_TOKEN is set: it holds counts and timings, no task,
//   user or tenant ids, and a scraper should not need a tenant's API key (AUTH_MODE=keys guards
//   /tasks only). On an exposed API, set METRICS_TOKEN (or keep /metrics off the public route).
// - POST /tasks: counted (submitted, accepted, rejected by error code) and traced (a server span
//   `submit`, child of the request's `traceparent` or a new trace) around the whole request, auth and
//   rate limit included: a wrap of Elysia's request handler, so no route changes.
import { Elysia, t } from "elysia";
import type { Config } from "../config.ts";
import { ErrorBody } from "../model.ts";
import { countSubmit, exposition, metrics } from "../observe/metrics.ts";
import { METRICS_CHALLENGE, METRICS_UNAUTHORIZED, metricsGuard } from "../observe/index.ts";
import { contextOfHeaders, inSpan, SpanKind, SpanStatusCode, tracingOn, type Context } from "../observe/tracing.ts";
import { ERRORS, jsonResponse } from "./errors.ts";
import { pathOf } from "./request-url.ts";

/** The error code of a refusal's JSON body, if it is one of ours (a bounded label), else `http_<status>`. */
async function reasonOf(res: Response): Promise<string> {
  try {
    const code = ((await res.clone().json()) as { error?: unknown }).error;
    if (typeof code === "string" && Object.hasOwn(ERRORS, code)) return code;
  } catch {
    /* not our JSON */
  }
  return `http_${res.status}`;
}

function counted(res: Response) {
  if (res.status === 202) countSubmit(202);
  else void reasonOf(res).then((reason) => countSubmit(res.status, reason));
}

type MapFn = (r: Request) => unknown;

/** Per POST /tasks: its `submit` span's context. */
const traces = new WeakMap<Request, Context>();

/** The trace context of a POST /tasks being handled (its `submit` span), for the request message's send. */
export const traceOfRequest = (r: Request): Context | undefined => traces.get(r);

/** POST /tasks in a `submit` span and counted; everything else passes straight through. */
function observeRequest(r: Request, fn: MapFn, metricsOn: boolean): unknown {
  if (r.method !== "POST") return fn(r);
  const path = pathOf(r.url);
  if (path !== "/tasks" && path !== "/tasks/") return fn(r);
  const run = async () => (await fn(r)) as Response;
  const p = !tracingOn()
    ? run()
    : inSpan("submit", (c) => {
        if (c) traces.set(r, c);
        return run();
      }, {
        kind: SpanKind.SERVER,
        parent: contextOfHeaders(r.headers),
        activate: false, // handed to the send by the route (traceOfRequest): see inSpan
        attributes: { "http.request.method": "POST", "http.route": "/tasks" },
        onResult: (s, res) => {
          s.setAttribute("http.response.status_code", res.status);
          if (res.status >= 500) s.setStatus({ code: SpanStatusCode.ERROR });
        },
      });
  if (!metricsOn) return p;
  return p.then((res) => {
    if (res instanceof Response) counted(res);
    return res;
  });
}

/** The plugin: nothing at all when metrics and tracing are both off. */
export function observePlugin(cfg: Config) {
  const app = new Elysia({ name: "observe" });
  const metricsOn = metrics() !== undefined;
  if (!metricsOn && !tracingOn()) return app;
  app.wrap(((fn: MapFn) => (r: Request) => observeRequest(r, fn, metricsOn)) as never);
  if (!metricsOn) return app;
  const allowed = metricsGuard(cfg);
  return app.get(
    "/metrics",
    async ({ request }) => {
      if (allowed && !allowed(request)) return jsonResponse(401, { error: "unauthorized", message: METRICS_UNAUTHORIZED }, METRICS_CHALLENGE);
      const { contentType, body } = await exposition();
      return new Response(body, { headers: { "content-type": contentType } });
    },
    {
      response: {
        200: t.String({ description: "Prometheus text format 0.0.4 (docs/observability.md lists the metrics)" }),
        401: ErrorBody,
      },
      detail: { summary: "Prometheus metrics: task counts and timings, dependencies' latency, consumer lag", operationId: "metrics" },
    },
  );
}
