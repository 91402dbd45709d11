// Signal handling for the entry files: the first SIGINT/SIGTERM runs the cleanups in order, each in
// its own try/catch, then exits 0; a second signal, or the deadline, forces the exit (code 1).
// Entry files install this before their first wait on Redis or RocketMQ: those waits take seconds
// when a server is away, and a signal meanwhile must still get a clean shutdown, not the default kill.
import type { Logger } from "./log.ts";

export type Cleanup = [name: string, fn: () => Promise<void> | void];

/**
 * api.ts's deadline for its shutdown (compose.yaml's stop_grace_period for the API is above it, else
 * Docker's SIGKILL cuts the shutdown short).
 */
export const API_SHUTDOWN_DEADLINE_MS = 15_000;

let stopping = false;
/**
 * A shutdown has begun: start-up should go no further (no port opened mid-shutdown), and a start-up
 * step failing because the cleanups closed its client is no start-up failure (the shutdown exits).
 */
export const shuttingDown = () => stopping;

export function handleSignals(log: Logger, cleanups: () => Cleanup[], deadlineMs: number): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      stopping = true;
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
