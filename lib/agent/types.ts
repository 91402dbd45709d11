import type { AgentResult, TaskProgress } from "../model.ts";

export interface AgentTask {
  task_id: string;
  user_id: string;
  content: string;
  attempt: number;
  /**
   * Runs `wait` with the run's timeout (TASK_TIMEOUT_MS) paused: for time spent queued for a shared
   * resource, such as a slot toward the LLM (LLM_MAX_CONCURRENCY). Absent when nothing can be paused.
   */
  paused?: <T>(wait: () => Promise<T>) => Promise<T>;
  /**
   * Reports progress: `pct` (0-100), `message`, `partial` (the output so far, whole). Merged into the
   * task's latest `progress` (GET /tasks/:id) and sent as a `progress` event (GET /tasks/:id/events);
   * written at most every 250 ms, the last report always. Returns at once; never throws. Absent when
   * nothing records it (an agent called outside a worker).
   */
  progress?: (p: TaskProgress) => void;
  /** Reports one answered LLM call (the worker sums them into the task's `usage`). Absent: nobody counts. */
  usage?: (call: LlmCall) => void;
}

/** One answered LLM call, as an agent reports it. */
export interface LlmCall {
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  ms: number;
}

/**
 * The agent logic: the one function a user replaces. It must honour `signal` (aborted on the task
 * timeout, on shutdown, or when this worker lost the task), throw RetryableAgentError for failures
 * another attempt may fix and PermanentAgentError for those it cannot; any other error is retried.
 */
export type Agent = (task: AgentTask, signal: AbortSignal) => Promise<AgentResult>;
