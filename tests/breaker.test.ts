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

// A message in hand handled cleanly while the breaker is open closes it; the probe loop, already
// waiting, must then leave it closed (it used to set it half-open: one message at a time again).
test("a success while the probe loop waits keeps the breaker closed", async () => {
  const log = createLogger({ level: "info", format: "json", write: () => {} });
  const probes: number[] = [];
  const b = new Breaker(log, { threshold: 1, baseMs: 20, maxMs: 20, probe: async () => (probes.push(Date.now()), true) });
  b.failure(new Error("down"));
  expect(b.state).toBe("open");
  b.success(); // the probe loop is sleeping (10-20 ms)
  expect(b.state).toBe("closed");
  // 50 times the longest wait: the loop has woken by then (a margin, not a guess at an event).
  await Bun.sleep(1_000);
  expect(b.state).toBe("closed");
  expect(probes.length).toBe(0);
  b.stop();
});

test("a success while a probe is in flight keeps the breaker closed", async () => {
  const log = createLogger({ level: "info", format: "json", write: () => {} });
  let answer!: (up: boolean) => void;
  let probed = false;
  const b = new Breaker(log, {
    threshold: 1, baseMs: 20, maxMs: 20,
    probe: () => ((probed = true), new Promise<boolean>((r) => (answer = r))),
  });
  b.failure(new Error("down"));
  await waitFor(() => probed, 5_000, "the probe to start");
  b.success();
  answer(true);
  await new Promise((r) => setTimeout(r, 0)); // the loop's continuation runs in the microtasks before this
  expect(b.state).toBe("closed");
  b.stop();
});
