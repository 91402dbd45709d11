// RocketMQ refusing our credentials is not an outage to wait out: it will not fix itself. The
// entries stop at start-up with a message that says so, instead of retrying and answering 503.
// The gRPC client reports it as UnauthorizedException / ForbiddenException (codes 40100 / 40300,
// apache/rocketmq-apis definition.proto) somewhere in the startup error's cause chain. The 5.3.3
// proxy answers 40100 for a missing permission too (its message says which resource), so the
// message names both causes and passes the server's reason on.
import type { Config } from "../config.ts";

const CODES = new Map([
  [40100, "UNAUTHORIZED"],
  [40300, "FORBIDDEN"],
]);

export function mqAuthProblem(e: unknown, cfg: Config): string | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 10; depth++, cur = (cur as { cause?: unknown }).cause) {
    const c = cur as { name?: string; code?: number; message?: string };
    const known = typeof c.code === "number" ? CODES.get(c.code) : undefined;
    if (known || c.name === "UnauthorizedException" || c.name === "ForbiddenException") {
      const who = cfg.MQ_ACCESS_KEY ? `MQ_ACCESS_KEY=${cfg.MQ_ACCESS_KEY}` : "no MQ_ACCESS_KEY (anonymous)";
      return `RocketMQ at ${cfg.MQ_ENDPOINT} refused our credentials (${who}): ${known ?? c.name}; ` +
        `check MQ_ACCESS_KEY / MQ_SECRET_KEY and the user's ACL. The server said: ${c.message ?? "(nothing)"}`;
    }
  }
  return undefined;
}

/** For entry files: a credentials problem ends the process (exit 2) with one clear line. */
export function exitOnMqAuthProblem(e: unknown, cfg: Config, log: { error(msg: string, f?: Record<string, unknown>): void }): void {
  const problem = mqAuthProblem(e, cfg);
  if (!problem) return;
  log.error(problem);
  process.exit(2);
}
