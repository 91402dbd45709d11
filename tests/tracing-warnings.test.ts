// The tracing SDK's reports of lost spans as log lines (lib/observe/tracing-warnings.ts): at most one
// per kind a minute, with the collector's credentials masked; and as counts (agent_trace_spans_lost_total)
// when the batch processor's queue overflows. The end-to-end case (a collector down, one hung) is
// tests/tracing-outage.test.ts.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createLogger } from "../lib/log.ts";
import { endpointForLog, exporterSecrets, mask, rateLimitedWarnings } from "../lib/observe/tracing-warnings.ts";

function captured() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
  return { log, lines };
}

describe("tracing warnings", () => {
  test("the endpoint is logged without user, password or query", () => {
    expect(endpointForLog("https://me:s3cret@collector.example:4318/v1/traces?key=abc")).toBe("https://collector.example:4318/v1/traces");
    expect(endpointForLog("not a url")).toBe("(not a URL)");
  });

  test("header values and the URL's password are the secrets, raw and decoded, longest first", () => {
    const secrets = exporterSecrets("http://u:p%40ssword@127.0.0.1:4318", {
      OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20tok-123456,x-team=ops",
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-api-key=k-abcdef",
    });
    expect(secrets).toContain("Bearer tok-123456");
    expect(secrets).toContain("Bearer%20tok-123456");
    expect(secrets).toContain("k-abcdef");
    expect(secrets).toContain("p@ssword");
    expect(secrets).not.toContain("ops"); // too short to be a credential, and masking it would garble messages
    expect(secrets.map((s) => s.length)).toEqual([...secrets.map((s) => s.length)].sort((a, b) => b - a));
    expect(mask('Header "authorization" has invalid value (Bearer tok-123456)', secrets)).toBe('Header "authorization" has invalid value ([redacted])');
  });

  test("the first warning of a kind is logged, then one a minute with the count held back", () => {
    const { log, lines } = captured();
    let now = 0;
    const warn = rateLimitedWarnings(log, ["sekrit-value"], () => now);
    warn("export", "spans not exported", "connect ECONNREFUSED 127.0.0.1:4318 sekrit-value");
    for (let i = 0; i < 5; i++) {
      now += 5_000;
      warn("export", "spans not exported", "connect ECONNREFUSED 127.0.0.1:4318");
    }
    warn("sdk dropped", "tracing SDK warning", "Dropped 7 spans because maxQueueSize reached");
    expect(lines.map((l) => [l.msg, l.level, l.error, l.held_back])).toEqual([
      ["spans not exported", "warn", "connect ECONNREFUSED 127.0.0.1:4318 [redacted]", undefined],
      ["tracing SDK warning", "warn", "Dropped 7 spans because maxQueueSize reached", undefined],
    ]);
    now = 60_000;
    warn("export", "spans not exported", "Request timed out");
    expect(lines.at(-1)).toMatchObject({ msg: "spans not exported", error: "Request timed out", held_back: 5 });
  });

  test("spans lost are counted: a failed batch's, and those dropped with the queue full (the SDK's own count)", async () => {
    // In a process of its own: tracing and metrics are process-wide state.
    const p = Bun.spawn(["bun", join(import.meta.dir, "support", "span-flood.ts")], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code, err).toBe(0);
    // 3,000 spans at once: 512 in the first export, 2,048 queued, 440 dropped; then one more. Every
    // span not dropped ends in a failed export, counted once.
    expect(JSON.parse(out.trim().split("\n").pop()!)).toEqual({ export_failed: 2561, queue_full: 440 });
  }, 60_000);
});
