// Our bun patches of the OpenTelemetry packages (patches/@opentelemetry*; why: docs/observability.md,
// "Overhead") keep what the unpatched code did: attribute checks still refuse what they refused
// (circular values, functions), keep own keys only and drop undefined; OTLP/JSON timestamps are still
// the exact decimal nanoseconds that the BigInt arithmetic gave. The first test fails when an upgrade
// drops a patch without anyone noticing.
import { describe, expect, test } from "bun:test";
import { dirname, join } from "node:path";
import { cleanAttributes, isAnyValue } from "@opentelemetry/core";
import { JsonTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

const LIMITS = { attributeCountLimit: 128, attributeValueLengthLimit: Infinity };

describe("OpenTelemetry patches", () => {
  test("are applied", async () => {
    // Bun's Function#toString drops comments: the installed files are read instead.
    for (const [pkg, file] of [["@opentelemetry/core", "common/attributes"], ["@opentelemetry/otlp-transformer", "common/utils"]] as const) {
      const dist = dirname(Bun.resolveSync(pkg, import.meta.dir));
      for (const ext of ["mjs", "cjs"]) expect(await Bun.file(join(dist, `${file}.${ext}`)).text(), `${pkg} ${file}.${ext}`).toContain("agent-prod patch");
    }
  });

  test("attribute values: primitives, arrays and plain objects pass; circular, functions, bigints do not", () => {
    for (const ok of ["s", "", 0, 1.5, true, null, [1, "a"], { a: { b: [1] } }, new Uint8Array([1])]) expect(isAnyValue(ok), String(ok)).toBe(true);
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const loop: unknown[] = [];
    loop.push(loop);
    for (const bad of [undefined, () => 1, 1n, Symbol("x"), circular, loop, new Date()]) expect(isAnyValue(bad), String(typeof bad)).toBe(false);
  });

  test("cleanAttributes keeps own keys, drops undefined and invalid values, counts what it dropped", () => {
    const proto = { inherited: "no" };
    const attrs = Object.assign(Object.create(proto), { a: "x", b: 2, c: undefined, d: () => 1, e: ["k"] });
    expect(cleanAttributes(attrs, LIMITS)).toEqual({ attributes: { a: "x", b: 2, e: ["k"] }, droppedAttributesCount: 1 });
    expect(cleanAttributes({ a: 1, b: 2, c: 3 }, { ...LIMITS, attributeCountLimit: 2 })).toEqual({ attributes: { a: 1, b: 2 }, droppedAttributesCount: 1 });
  });

  test("OTLP/JSON timestamps are the exact nanoseconds", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ resource: resourceFromAttributes({ "service.name": "patch-test" }), spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    const tracer = provider.getTracer("patch-test");
    const times: [number, number][] = [[1_764_646_000, 0], [1_764_646_000, 999_999_999], [1_764_646_001, 5], [1, 123_456_789], [0, 42]];
    for (const [i, t] of times.entries()) tracer.startSpan(`s${i}`, { startTime: t }).end([t[0] + 1, t[1]]);
    await provider.forceFlush();
    expect(exporter.getFinishedSpans().length).toBe(times.length);
    const body = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(exporter.getFinishedSpans())!));
    const spans = body.resourceSpans[0].scopeSpans[0].spans as { name: string; startTimeUnixNano: string; endTimeUnixNano: string }[];
    const nanos = ([s, ns]: [number, number]) => (BigInt(s) * 1_000_000_000n + BigInt(ns)).toString();
    for (const [i, t] of times.entries()) {
      const span = spans.find((s) => s.name === `s${i}`)!;
      expect(span.startTimeUnixNano, `s${i}`).toBe(nanos(t));
      expect(span.endTimeUnixNano, `s${i}`).toBe(nanos([t[0] + 1, t[1]]));
    }
  });
});
