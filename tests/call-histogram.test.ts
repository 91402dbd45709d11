// The hot-path histogram (lib/observe/call-histogram.ts) must read to Prometheus exactly as
// prom-client's own: cumulative buckets, `le` inclusive, +Inf, _sum and _count per label value.
import { expect, test } from "bun:test";
import { Histogram, Registry } from "prom-client";
import { CallHistogram } from "../lib/observe/call-histogram.ts";

test("renders the same exposition as a prom-client Histogram fed the same observations", async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const buckets = [0.001, 0.01, 0.1];
  const a = new CallHistogram("x_seconds", "help", buckets, "op", ours);
  const b = new Histogram({ name: "x_seconds", help: "help", buckets, labelNames: ["op"], registers: [theirs] });
  for (const [op, v] of [["ack", 0.001], ["ack", 0.0011], ["send", 0.5], ["ack", 0], ["send", 0.01]] as const) {
    a.observe(op, v);
    b.labels(op).observe(v);
  }
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.metrics()).toContain('x_seconds_bucket{le="0.001",op="ack"} 2');
  a.reset();
  expect(await ours.metrics()).not.toContain("x_seconds_bucket");
});
