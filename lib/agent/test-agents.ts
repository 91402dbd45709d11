// The recording agent (AGENT=record): for fault tests and scripts/chaos.ts, never for production.
// It appends one JSON line per event of each run (start, end, kill) to AGENT_RECORD_DIR/<pid>.jsonl,
// a file outside Redis and RocketMQ, so the history survives the very faults under test (Redis down,
// a broker hanging) and a checker can tell whether one task ever ran twice at the same time.
// Its behaviour is chosen per task by markers in the content (the tests write the content):
//   #delay=MS   wait MS instead of AGENT_DELAY_MS (honouring the AbortSignal, as agents must)
//   #kill       SIGKILL its own worker process mid-run (a task that crashes every worker: OOM, a segfault)
//   #hang=MS    ignore the AbortSignal and keep running for MS (an agent that never checks its signal)
//   #fail       throw RetryableAgentError (an agent that fails; the task is retried, then failed)
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { RetryableAgentError } from "../errors.ts";
import type { AgentResult } from "../model.ts";
import { sleep } from "../time.ts";
import type { Agent } from "./types.ts";

export type RunEvent = {
  ev: "start" | "end" | "kill";
  task: string;
  /** one id per call of the agent */
  run: string;
  pid: number;
  /** Date.now() */
  at: number;
  attempt: number;
  /** the start event carries the content (first 120 characters): which submit this run belongs to */
  content?: string;
  /** end: "ok", "error" (the agent failed) or "aborted" (its signal fired) */
  outcome?: "ok" | "error" | "aborted";
};

export function recordFile(dir: string, pid = process.pid) {
  return join(dir, `${pid}.jsonl`);
}

function marker(content: string, name: string): number | true | undefined {
  const m = new RegExp(`#${name}(?:=(\\d+))?(?![\\w=])`).exec(content);
  if (!m) return undefined;
  return m[1] === undefined ? true : Number(m[1]);
}

export function recordingAgent(dir: string, delayMs: number): Agent {
  mkdirSync(dir, { recursive: true });
  const file = recordFile(dir);
  // Synchronous appends: the line is in the file before the run goes on, even if the process dies next.
  const write = (e: RunEvent) => appendFileSync(file, JSON.stringify(e) + "\n");
  return async (task, signal) => {
    const run = crypto.randomUUID();
    const base = { task: task.task_id, run, pid: process.pid, attempt: task.attempt };
    write({ ev: "start", ...base, at: Date.now(), content: task.content.slice(0, 120) });
    const end = (outcome: RunEvent["outcome"]) => write({ ev: "end", ...base, at: Date.now(), outcome });
    if (marker(task.content, "kill")) {
      write({ ev: "kill", ...base, at: Date.now() });
      process.kill(process.pid, "SIGKILL");
      await sleep(60_000); // never reached: the signal is delivered at once
    }
    const hang = marker(task.content, "hang");
    if (hang) {
      await Bun.sleep(hang === true ? 3_600_000 : hang); // deliberately deaf to `signal`
      end(signal.aborted ? "aborted" : "ok");
      if (signal.aborted) throw signal.reason;
    } else {
      const d = marker(task.content, "delay");
      try {
        await sleep(typeof d === "number" ? d : delayMs, signal);
      } catch (e) {
        end("aborted");
        throw e;
      }
      if (marker(task.content, "fail")) {
        end("error");
        throw new RetryableAgentError("recording agent: #fail asked for a failure");
      }
      end("ok");
    }
    const result: AgentResult = { tags: ["record"], score: 1, reason: `recording agent, attempt ${task.attempt}` };
    return result;
  };
}
