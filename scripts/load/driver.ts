// Pacing of submits: closed loop (C in flight, each starts when one ends) or open loop (R per second,
// whatever is in flight). `one(i)` submits task i and records its own outcome; it must not throw.
import type { LoadOptions } from "./args.ts";
import { cpuRun } from "./cpu.ts";
import { startProgress } from "./progress.ts";
import type { Receiver } from "./receiver.ts";
import type { Tracker } from "./tracker.ts";

/**
 * A run's middle, the same in both modes: submit every task at the chosen pace with live progress,
 * wait for the results (or the timeout), run `afterResults` (load.ts --metrics: read the counters
 * as soon as the last result is in, not after the receiver's close), then stop the progress line and
 * the receiver.
 */
export async function runAndWait(
  t: Tracker,
  o: LoadOptions,
  receiver: Receiver,
  submit: (i: number) => Promise<void>,
  afterResults?: () => Promise<unknown>,
) {
  const progress = startProgress(t, o.tasks, !o.json && Boolean(process.stderr.isTTY));
  try {
    t.start();
    cpuRun.window?.begin();
    await drive(o.tasks, o, async (i) => {
      t.submitted++;
      await submit(i);
    });
    await t.waitForResults(o.timeoutS * 1000);
    t.end();
    cpuRun.window?.end();
    await afterResults?.();
  } finally {
    progress.stop();
    await receiver.close();
  }
}

export async function drive(
  tasks: number,
  pace: { concurrency: number; rate?: number },
  one: (i: number) => Promise<void>,
): Promise<void> {
  if (pace.rate) {
    const interval = 1000 / pace.rate;
    const start = performance.now();
    const inflight = new Set<Promise<void>>();
    for (let i = 0; i < tasks; i++) {
      const due = start + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await Bun.sleep(wait);
      const p: Promise<void> = one(i).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
    return;
  }
  let next = 0;
  const lane = async () => {
    while (next < tasks) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.min(pace.concurrency, tasks) }, lane));
}
