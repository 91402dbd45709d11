// The consumer loop's circuit breaker (lib/worker/breaker.ts) on its own: it opens after a few
// failures in a row, probes with growing delays while the probe fails, goes half-open when it
// answers, closes on a success, and logs each change of state once.
import { expect, test } from "bun:test";
import { createLogger } from "../lib/log.ts";
import { Breaker } from "../lib/worker/breaker.ts";
import { waitFor } from "./support/processes.ts";

test("opens after 3 failures, probes with backoff, half-opens when the probe answers, closes on success; logs once each", async () => {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger({ level: "info", format: "json", write: (l) => lines.push(JSON.parse(l)) });
  let up = false;
  const probes: number[] = [];
  const b = new Breaker(log, { threshold: 3, baseMs: 50, maxMs: 400, probe: async () => (probes.push(Date.now()), up) });
  b.failure(new Error("down"));
  b.failure(new Error("down"));
  expect(b.state).toBe("closed");
  for (let i = 0; i < 50; i++) b.failure(new Error("down")); // a burst of in-flight failures
  expect(b.state).toBe("open");
  await waitFor(() => probes.length >= 4, 5_000, "four failed probes");
  // Full jitter on a doubling delay: the later gaps are longer than the first.
  const gaps = probes.slice(1).map((t, i) => t - probes[i]!);
  expect(gaps.at(-1)!).toBeGreaterThan(50);
  up = true;
  await waitFor(() => b.state === "half-open", 5_000, "half-open");
  b.failure(new Error("the probe message failed"));
  expect(b.state).toBe("open");
  await waitFor(() => b.state === "half-open", 5_000, "half-open again");
  b.success();
  expect(b.state).toBe("closed");
  b.stop();
  expect(lines.filter((l) => l.msg.includes("receiving paused")).length).toBe(1);
  expect(lines.filter((l) => l.msg.includes("receiving resumed")).length).toBe(1);
  expect(lines.length).toBe(2);
});
