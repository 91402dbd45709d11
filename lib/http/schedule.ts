// When a delayed task is due: `delay_ms` from now, or `run_at` (RFC 3339), as checked by body.ts.
// The limit is RocketMQ's timer limit, set as MAX_DELAY_SECONDS: the gRPC proxy refuses a delivery
// time more than maxDelayTimeMills ahead (1 day by default, SendMessageActivity.validateDelayTime) and
// the broker one more than timerMaxDelaySec ahead (3 days, HookUtils.transformTimerMessage). Past it
// the client gets 422 before anything is written, instead of a 503 for the broker's refusal.
import type { TaskInput } from "../model.ts";
import { ApiError } from "./errors.ts";
import { parseRfc3339 } from "./body.ts";

/** The task's due time (ms), or undefined to run it at once (no delay, delay 0, or run_at not in the future). */
export function dueAt(input: Pick<TaskInput, "delay_ms" | "run_at">, now: number, maxDelaySeconds: number): number | undefined {
  let at: number;
  let field: "delay_ms" | "run_at";
  if (input.delay_ms !== undefined) {
    if (input.delay_ms === 0) return undefined;
    at = now + input.delay_ms;
    field = "delay_ms";
  } else if (input.run_at !== undefined) {
    at = parseRfc3339(input.run_at);
    if (at <= now) return undefined; // in the past: run now
    field = "run_at";
  } else return undefined;
  if (at - now > maxDelaySeconds * 1000)
    throw new ApiError(
      "delay_too_long",
      `${field}: ${Math.ceil((at - now) / 1000)} s from now is past the limit of ${maxDelaySeconds} s ` +
        `(MAX_DELAY_SECONDS: RocketMQ's timer limit, proxy maxDelayTimeMills / broker timerMaxDelaySec)`,
      field,
    );
  return at;
}
