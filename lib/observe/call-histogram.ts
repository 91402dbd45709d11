// A histogram with one label, for the hot path: the latency of every Redis command and RocketMQ request
// (about ten per task). prom-client's Histogram validates and hashes the label set on every observe,
// even through a labelled child; here an observation is a bucket search and two additions into a
// Float64Array. prom-client still writes the exposition: the registry asks `get()` at scrape time for
// values in the shape its own histograms give (cumulative `_bucket` rows with `le`, `_sum`, `_count`).
import type { Registry } from "prom-client";

interface Series {
  /** per bucket, not cumulative; the last slot is +Inf */
  counts: Float64Array;
  sum: number;
  count: number;
}

interface Row {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

export class CallHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  #series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
    private readonly labelName: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  observe(label: string, seconds: number) {
    let s = this.#series.get(label);
    if (!s) this.#series.set(label, (s = { counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 }));
    const b = this.buckets;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** prom-client's registry calls this at scrape time. */
  get() {
    const values: Row[] = [];
    for (const [label, s] of this.#series) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: i < this.buckets.length ? this.buckets[i]! : "+Inf", [this.labelName]: label }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { [this.labelName]: label }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.labelName]: label }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset() {
    this.#series.clear();
  }
}
