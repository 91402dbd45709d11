// A minimal OTLP/HTTP trace receiver (what an OpenTelemetry Collector's otlp receiver does on
// /v1/traces), JSON encoding: Bun.serve on 127.0.0.1, a free port. Keeps every span it is sent,
// flattened, with its service name. Used by tests/tracing.test.ts (`bun tests/support/otlp-receiver.ts`
// serves until killed, printing counts). Benchmarks use scripts/load/span-sink.ts, which only counts.

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status?: { code?: number; message?: string };
}

/** OTLP/JSON ids are hex; a serializer that sent base64 (the protobuf JSON mapping) is read too. */
function hexId(id: unknown, bytes: number): string {
  if (typeof id !== "string" || !id) return "";
  if (id.length === bytes * 2 && /^[0-9a-f]+$/i.test(id)) return id.toLowerCase();
  return Buffer.from(id, "base64").toString("hex");
}

function attrValue(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  if ("arrayValue" in v) return ((v.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(attrValue);
  return undefined;
}

const attrs = (list: unknown) =>
  Object.fromEntries(((list as { key: string; value: Record<string, unknown> }[]) ?? []).map((a) => [a.key, attrValue(a.value)]));

export function otlpReceiver() {
  const spans: ReceivedSpan[] = [];
  const problems: string[] = [];
  let requests = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (req.method !== "POST" || path !== "/v1/traces") return new Response("not found", { status: 404 });
      requests++;
      let raw = new Uint8Array(await req.arrayBuffer());
      if (req.headers.get("content-encoding") === "gzip") raw = Bun.gunzipSync(raw);
      if (!(req.headers.get("content-type") ?? "").includes("json")) {
        problems.push(`content-type ${req.headers.get("content-type")}: only OTLP/JSON is read here`);
        return new Response(null, { status: 415 });
      }
      const body = JSON.parse(new TextDecoder().decode(raw)) as { resourceSpans?: any[] };
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attrs(rs.resource?.attributes)["service.name"] ?? "");
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            spans.push({
              service,
              traceId: hexId(s.traceId, 16),
              spanId: hexId(s.spanId, 8),
              parentSpanId: hexId(s.parentSpanId, 8),
              name: String(s.name),
              kind: Number(s.kind ?? 0),
              attributes: attrs(s.attributes),
              status: s.status,
            });
      }
      return Response.json({ partialSuccess: {} });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    spans,
    problems,
    get requests() {
      return requests;
    },
    trace: (traceId: string) => spans.filter((s) => s.traceId === traceId),
    stop: () => server.stop(true),
  };
}

if (import.meta.main) {
  const r = otlpReceiver();
  console.log(`OTLP/HTTP receiver at ${r.url}/v1/traces`);
  setInterval(() => console.log(`${r.requests} requests, ${r.spans.length} spans`), 10_000);
}
