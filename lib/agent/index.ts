import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { demoAgent } from "./demo.ts";
import { openAiAgent } from "./openai.ts";
import { Semaphore } from "./semaphore.ts";
import type { Agent } from "./types.ts";

export type { Agent, AgentTask } from "./types.ts";
export { runClock, type RunClock } from "./clock.ts";

/**
 * The LLM agent when LLM_BASE_URL is set (lib/config.ts says when a key is needed), the demo agent
 * otherwise. `llmFetch`: the fetch the LLM agent calls through (the fleet's budget, lib/tenancy/llm-budget.ts).
 */
export function agentFromConfig(cfg: Config, log?: Logger, llmFetch?: typeof fetch): { agent: Agent; name: string } {
  if (cfg.LLM_BASE_URL)
    return {
      agent: openAiAgent({
        baseUrl: cfg.LLM_BASE_URL,
        apiKey: cfg.LLM_API_KEY,
        model: cfg.LLM_MODEL,
        timeoutMs: cfg.LLM_TIMEOUT_MS,
        repairTries: cfg.LLM_REPAIR_TRIES,
        maxTokens: cfg.LLM_MAX_TOKENS,
        slots: new Semaphore(cfg.LLM_MAX_CONCURRENCY),
        log: log?.child({ agent: "openai" }),
        fetch: llmFetch,
      }),
      name: "openai",
    };
  return { agent: demoAgent(cfg.AGENT_DELAY_MS), name: "demo" };
}
