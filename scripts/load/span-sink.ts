// A light OTLP/HTTP trace sink for benchmarks: accepts POST /v1/traces, reads the body and counts the
// spans in it without parsing or keeping them. The full receiver (tests/support/otlp-receiver.ts)
// JSON-parses every body and keeps every span: right for tests, but in a benchmark it runs on the
// same cores as the system measured and would add its own cost to tracing's. A collector would be
// elsewhere; this is the least a sink can do.
//
// Counting: the exporter (@opentelemetry/exporter-trace-otlp-http) sends OTLP/JSON, one object per
// span with a `"spanId":` member; parents are `"parentSpanId"` (a capital S, so not counted), and
// our spans carry no links (which would hold a `spanId` too). A string value holding `"spanId":`
// would be escaped (`\"spanId\":`), so it is not counted either. Protobuf bodies are refused (415)
// and noted in `problems`: the count would be wrong, and this says so instead.

const NEEDLE = Buffer.from('"spanId":');

/** Occurrences of `"spanId":` in a body: the spans of one OTLP/JSON export request. */
export function countSpans(body: Buffer): number {
  let n = 0;
  for (let i = body.indexOf(NEEDLE); i !== -1; i = body.indexOf(NEEDLE, i + NEEDLE.length)) n++;
  return n;
}

export function spanSink() {
  let spans = 0;
  let requests = 0;
  let bytes = 0;
  const problems: string[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      if (req.method !== "POST" || new URL(req.url).pathname !== "/v1/traces") return new Response("not found", { status: 404 });
      requests++;
      let body = Buffer.from(await req.arrayBuffer());
      bytes += body.length;
      const type = req.headers.get("content-type") ?? "";
      if (!type.includes("json")) {
        if (problems.length < 10) problems.push(`content-type ${type}: only OTLP/JSON is counted here`);
        return new Response(null, { status: 415 });
      }
      if (req.headers.get("content-encoding") === "gzip") body = Buffer.from(Bun.gunzipSync(body));
      spans += countSpans(body);
      return Response.json({ partialSuccess: {} });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    problems,
    /** spans counted so far */
    get spans() {
      return spans;
    },
    get requests() {
      return requests;
    },
    /** request bytes received (before gunzip) */
    get bytes() {
      return bytes;
    },
    stop: () => server.stop(true),
  };
}
