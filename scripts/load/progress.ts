// A one-line live progress bar on stderr, redrawn a few times a second; silent when stderr is not a TTY.
import type { Tracker } from "./tracker.ts";

export function startProgress(t: Tracker, total: number, enabled = Boolean(process.stderr.isTTY)) {
  if (!enabled) return { stop() {} };
  let lastAt = performance.now();
  let lastDone = 0;
  let rate = 0;
  const draw = () => {
    const now = performance.now();
    const finished = t.done + t.failed;
    if (now - lastAt >= 1000) {
      rate = ((finished - lastDone) * 1000) / (now - lastAt);
      lastAt = now;
      lastDone = finished;
    }
    const width = 24;
    const filled = Math.round((width * finished) / Math.max(1, total));
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    const rejected = t.rejectedTotal;
    const line =
      `[${bar}] submitted ${t.submitted}/${total} done ${t.done} failed ${t.failed}` +
      (rejected ? ` rejected ${rejected}` : "") +
      ` ${rate.toFixed(0)}/s ${((now - t.startedAt) / 1000).toFixed(1)}s`;
    process.stderr.write(`\r\x1b[2K${line}`);
  };
  const timer = setInterval(draw, 200);
  return {
    stop() {
      clearInterval(timer);
      draw();
      process.stderr.write("\n");
    },
  };
}
