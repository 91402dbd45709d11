// The benchmark's light span sink (scripts/load/span-sink.ts) counts what the real exporter sends:
// the OpenTelemetry SDK and its OTLP/HTTP exporter, as lib/observe/tracing.ts builds them, export
// parents, children and spans whose attributes hold the very text the sink looks for; the count is
// the number of spans ended, no more (parentSpanId, escaped strings) and no fewer.
import { afterAll, describe, expect, test } from "bun:test";
import { context, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { countSpans, spanSink } from "../scripts/load/span-sink.ts";

const sink = spanSink();
afterAll(() => sink.stop());

describe("span sink", () => {
  test("counts every span the OTLP/HTTP exporter sends, children and tricky attributes included", async () => {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ "service.name": "span-sink-test" }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${sink.url}/v1/traces` }), maxExportBatchSize: 64 })],
    });
    const tracer = provider.getTracer("span-sink-test");
    let ended = 0;
    for (let i = 0; i < 100; i++) {
      const parent = tracer.startSpan(`task ${i}`, { attributes: { note: '{"spanId":"0011223344556677"}', n: i } });
      const ctx = trace.setSpan(context.active(), parent);
      for (let c = 0; c < 6; c++) {
        tracer.startSpan(`step ${c}`, { attributes: { "messaging.rocketmq.message.keys": ['"spanId":'] } }, ctx).end();
        ended++;
      }
      parent.end();
      ended++;
    }
    await provider.shutdown();
    expect(sink.problems).toEqual([]);
    expect(sink.requests).toBeGreaterThan(1);
    expect(sink.spans).toBe(ended);
  });

  test("a body without spans counts none; one span with a parent counts one", () => {
    expect(countSpans(Buffer.from('{"resourceSpans":[]}'))).toBe(0);
    expect(countSpans(Buffer.from('{"spans":[{"traceId":"ab","spanId":"cd","parentSpanId":"ef"}]}'))).toBe(1);
  });
});
