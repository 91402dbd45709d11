// Chaos for operators: `bun scripts/chaos.ts --duration 600 [--seed N] [--dir DIR] [--json]`.
// Against the local stack (bun scripts/stack.ts), it runs an API and workers of its own with the
// recording agent, sends load, and kills, stops or restarts a worker, the API, Redis or the broker JVM
// at random intervals; then it reports accepted, done, failed, lost, duplicate results and the most
// concurrent runs of one task. Exits 1 if a guarantee broke, 2 on bad options. See docs/reliability.md.
import { parseChaosArgs, USAGE } from "./chaos/args.ts";
import { parseOrExit } from "./load/cli.ts";
import { emergencyStop, formatReport, reportFailed, runChaos } from "./chaos/run.ts";

async function main() {
  const o = parseOrExit(() => parseChaosArgs(process.argv.slice(2)), USAGE, "stderr");
  const tty = !o.json && Boolean(process.stderr.isTTY);
  if (!o.json) console.error(`chaos: seed ${o.seed}, ${o.durationS} s, parts ${o.parts.join(",")}, actions ${o.actions.join(",")}`);
  // Ctrl-C: stop injecting, resume and restart every part, clean up, report what ran; twice: exit now.
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) {
      emergencyStop();
      process.exit(130);
    }
    console.error("\nchaos: stopping early, cleaning up (again to exit at once)");
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const report = await runChaos(o, process.env, tty ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : undefined, stop.signal);
  if (tty) process.stderr.write("\n");
  if (o.json) process.stdout.write(JSON.stringify(report) + "\n");
  else console.log(formatReport(report));
  process.exit(reportFailed(report) ? 1 : 0);
}

main().catch((e) => {
  console.error("chaos failed:", e instanceof Error ? e.message : e);
  process.exit(1);
});
