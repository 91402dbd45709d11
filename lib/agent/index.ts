import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { demoAgent } from "./demo.ts";
import { openAiAgent, type OpenAiOptions } from "./openai.ts";
import { Semaphore } from "./semaphore.ts";
import { recordingAgent } from "./test-agents.ts";
import type { Agent } from "./types.ts";

export type { Agent, AgentTask } from "./types.ts";
export { runClock, type RunClock } from "./clock.ts";

/**
 * AGENT=record: the recording test agent. Otherwise the LLM agent when LLM_BASE_URL is set (lib/config.ts
 * says when a key is needed), the demo agent otherwise. `budget`: the fleet's LLM budget
 * (lib/tenancy/llm-budget.ts), whose turn every LLM call waits for.
 */
export function agentFromConfig(cfg: Config, log?: Logger, budget?: OpenAiOptions["budget"]): { agent: Agent; name: string } {
  // Fault tests and scripts/chaos.ts: runs recorded outside Redis and RocketMQ (lib/agent/test-agents.ts).
  if (cfg.AGENT === "record") return { agent: recordingAgent(cfg.AGENT_RECORD_DIR, cfg.AGENT_DELAY_MS), name: "record" };
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
        budget,
      }),
      name: "openai",
    };
  return { agent: demoAgent(cfg.AGENT_DELAY_MS), name: "demo" };
}
