// The demo agent: waits like the original's mock LLM call did, then derives a result from the content,
// so the whole system runs with no AI service. With a delay of 1 s or more (the quick start's 3 s) it
// reports progress at each quarter of it, so the quick start shows the events (GET /tasks/:id/events);
// shorter delays (benchmarks, most tests) report nothing, so they measure the queue, not progress writes.
import type { AgentResult } from "../model.ts";
import { sleep } from "../time.ts";
import type { Agent } from "./types.ts";

export function demoAgent(delayMs: number): Agent {
  return async (task, signal) => {
    if (delayMs >= 1_000) {
      const steps = 4;
      for (let i = 1; i <= steps; i++) {
        await sleep(delayMs / steps, signal);
        task.progress?.({ pct: (100 * i) / steps, message: i < steps ? `thinking (${i}/${steps})` : "writing the profile" });
      }
    } else if (delayMs > 0) await sleep(delayMs, signal);
    const words = task.content.split(/[\s,.;:!?，。；：！？、]+/u).filter(Boolean);
    const tags = [...new Set(words.map((w) => w.slice(0, 16)))].slice(0, 5);
    const result: AgentResult = {
      tags: tags.length ? tags : ["general"],
      score: Math.min(100, [...task.content].length),
      reason: `demo agent: ${[...task.content].length} characters from user ${task.user_id}`,
    };
    return result;
  };
}
