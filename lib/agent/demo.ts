// The demo agent: waits like the original's mock LLM call did, then derives a result from the content,
// so the whole system runs with no AI service. It reports progress at each quarter of its delay, so the
// quick start shows the events (GET /tasks/:id/events); with no delay it reports nothing.
import type { AgentResult } from "../model.ts";
import { sleep } from "../time.ts";
import type { Agent } from "./types.ts";

export function demoAgent(delayMs: number): Agent {
  return async (task, signal) => {
    const steps = 4;
    for (let i = 1; delayMs > 0 && i <= steps; i++) {
      await sleep(delayMs / steps, signal);
      task.progress?.({ pct: (100 * i) / steps, message: i < steps ? `thinking (${i}/${steps})` : "writing the profile" });
    }
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
