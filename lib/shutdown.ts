// Signal handling for the entry files: the first SIGINT/SIGTERM runs the cleanups in order, each in
// its own try/catch, then exits 0; a second signal, or the deadline, forces the exit (code 1).
import type { Logger } from "./log.ts";

export type Cleanup = [name: string, fn: () => Promise<void> | void];

export function handleSignals(log: Logger, cleanups: () => Cleanup[], deadlineMs: number): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const force = setTimeout(() => {
        log.error("shutdown deadline passed: forcing exit", { deadline_ms: deadlineMs });
        process.exit(1);
      }, deadlineMs);
      force.unref();
      for (const [name, fn] of cleanups()) {
        try {
          await fn();
        } catch (e) {
          log.warn("cleanup failed", { step: name, error: e as Error });
        }
      }
      clearTimeout(force);
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    if (closing) {
      log.warn("second signal: exiting now", { signal: sig });
      process.exit(1);
    }
    log.info("shutting down", { signal: sig });
    void close().then(() => {
      log.info("shutdown complete");
      process.exit(0);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return close;
}
