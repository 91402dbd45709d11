// Fleet-wide LLM budgets (LLM_RPM, LLM_TPM) per model, in Redis (lua/llm-reserve.lua): every call of
// every worker takes its turn on the model's timelines before it is sent, and waits for it, so the
// fleet together stays within the provider's limits instead of meeting them as 429s. A call over
// budget waits (its task's heartbeat keeps running); it is never failed for the budget.
// Tokens are reserved from an estimate before the call (the request's size plus the answer's
// allowance) and corrected from the answer's `usage.total_tokens` after it.
// The LLM agent (lib/agent/openai.ts) waits for turn() before each call, with its task clock paused
// and before the call's own LLM_TIMEOUT_MS starts; wrap() does the same for any other fetch.
import type { Config } from "../config.ts";
import { toError } from "../errors.ts";
import { tenancyKeys, type TenancyKeys } from "../keys.ts";
import type { Logger } from "../log.ts";
import type { Redis } from "../scripts.ts";
import { sleep } from "../time.ts";
import { runTenancyScript } from "./scripts.ts";

/** Tokens allowed for an answer when the request names no max_tokens. */
const ANSWER_TOKENS = 256;

/** A guess that errs high: about 3 UTF-8 bytes a token (CJK text is ~1 token a character). */
export function estimateTokens(requestBody: string): number {
  let max = ANSWER_TOKENS;
  try {
    const j = JSON.parse(requestBody) as { max_tokens?: number; max_completion_tokens?: number };
    max = j.max_completion_tokens ?? j.max_tokens ?? ANSWER_TOKENS;
  } catch {
    /* not JSON: the default allowance */
  }
  return Math.ceil(Buffer.byteLength(requestBody, "utf8") / 3) + max;
}

export class LlmBudget {
  readonly keys: TenancyKeys;
  constructor(
    readonly redis: Redis,
    prefix: string,
    readonly rpm: number,
    readonly tpm: number,
    private readonly log?: Logger,
  ) {
    this.keys = tenancyKeys(prefix);
  }

  /** Reserves a turn for a call of about `tokens` tokens; returns how long to wait for it (ms). */
  async reserve(model: string, tokens: number): Promise<number> {
    const r = (await runTenancyScript(this.redis, "llm-reserve", [this.keys.llmBudget(model)], ["reserve", this.rpm, this.tpm, tokens])) as number[];
    return r[0]!;
  }

  /** Corrects the token timeline once the call's real usage is known. */
  async adjust(model: string, delta: number): Promise<void> {
    if (this.tpm > 0 && delta !== 0) await runTenancyScript(this.redis, "llm-reserve", [this.keys.llmBudget(model)], ["adjust", this.rpm, this.tpm, delta]);
  }

  /**
   * Waits for the turn of a call with this request body (its `model` picks the timelines); returns
   * what to call with the answer, whose `usage.total_tokens` corrects the token timeline. A caller
   * with its own per-call timeout should start it after this, not before.
   */
  async turn(requestBody: string, signal?: AbortSignal): Promise<(res: Response) => void> {
    let model = "default";
    try {
      model = String((JSON.parse(requestBody) as { model?: string }).model ?? model);
    } catch {
      /* no JSON body: the default timeline */
    }
    const estimate = estimateTokens(requestBody);
    const wait = await this.reserve(model, estimate);
    if (wait > 0) {
      this.log?.debug("LLM call waits for its turn in the budget", { model, wait_ms: wait });
      await sleep(wait, signal);
    }
    return (res) => {
      if (this.tpm <= 0) return;
      void res
        .clone()
        .json()
        .then((j) => {
          const used = (j as { usage?: { total_tokens?: number } } | null)?.usage?.total_tokens;
          return typeof used === "number" ? this.adjust(model, used - estimate) : undefined;
        })
        .catch((e) => this.log?.debug("LLM usage not read; the estimate stands", { error: toError(e) }));
    };
  }

  /** `fetch` that waits for the call's turn first and reports the tokens it used afterwards. */
  wrap(inner: typeof fetch = fetch): typeof fetch {
    const budgeted = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
      const answered = await this.turn(typeof init?.body === "string" ? init.body : "", init?.signal ?? undefined);
      const res = await inner(input, init);
      answered(res);
      return res;
    };
    return Object.assign(budgeted, { preconnect: inner.preconnect }) as typeof fetch;
  }
}

/** The fleet's budget for the configured model, or undefined without LLM_RPM / LLM_TPM. */
export function llmBudgetFor(cfg: Config, redis: Redis, log: Logger): LlmBudget | undefined {
  return cfg.LLM_RPM || cfg.LLM_TPM ? new LlmBudget(redis, cfg.REDIS_PREFIX, cfg.LLM_RPM, cfg.LLM_TPM, log) : undefined;
}
