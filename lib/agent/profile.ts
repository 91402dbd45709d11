// What the LLM is asked for and how its answer is checked: the prompt, the JSON schema sent as the
// response format, and the validation whose message goes back to the model as a repair request.
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { AgentResult } from "../model.ts";

export const SYSTEM_PROMPT =
  "You build a short user-interest profile from the user's text. Answer with one JSON object only: " +
  '{"tags": [string, ...] (1 to 5 short interest tags), "score": integer 0-100 (purchase intent), "reason": string (one sentence)}.';

/**
 * The answer's schema, tighter than AgentResult: a grammar-constrained server (llama.cpp) cannot
 * produce an empty tag list or an endless reason with it. llama.cpp ignores integer bounds, so the
 * score is clamped below rather than repaired.
 */
export const ProfileAnswer = Type.Object(
  {
    tags: Type.Array(Type.String({ minLength: 1, maxLength: 40 }), { minItems: 1, maxItems: 5 }),
    score: Type.Integer({ minimum: 0, maximum: 100 }),
    reason: Type.String({ minLength: 1, maxLength: 300 }),
  },
  { additionalProperties: false },
);

/** Plain JSON schema (TypeBox's symbols dropped), as sent in `response_format`. */
export const PROFILE_SCHEMA = JSON.parse(JSON.stringify(ProfileAnswer)) as Record<string, unknown>;

export type Checked = { ok: true; result: AgentResult } | { ok: false; problem: string };

/**
 * Parses and checks an answer. Near misses are repaired here, not by the model: "80" -> 80,
 * "x" -> ["x"], a raw newline inside a string, a score outside 0-100 clamped, extra fields and tags past the fifth dropped,
 * blank tags removed. What is left wrong is described in one line for the repair message.
 */
export function checkAnswer(content: string, finishReason?: string): Checked {
  let parsed: unknown;
  try {
    parsed = parseLenient(content);
  } catch {
    const cut = finishReason === "length" ? " (the answer was cut off at the token limit: answer shorter)" : "";
    return { ok: false, problem: `the answer is not valid JSON${cut}` };
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return { ok: false, problem: "the answer is not a JSON object" };
  const v = Value.Convert(ProfileAnswer, parsed) as Record<string, unknown>;
  if (Array.isArray(v.tags))
    v.tags = v.tags
      .map((t) => (typeof t === "string" ? t.trim().slice(0, 40) : t))
      .filter((t) => t !== "")
      .slice(0, 5);
  if (typeof v.score === "number" && Number.isInteger(v.score)) v.score = Math.min(100, Math.max(0, v.score));
  if (typeof v.reason === "string") v.reason = v.reason.trim().slice(0, 300);
  const cleaned = Value.Clean(ProfileAnswer, v);
  if (Value.Check(ProfileAnswer, cleaned)) return { ok: true, result: cleaned as AgentResult };
  const first = [...Value.Errors(ProfileAnswer, cleaned)][0];
  const where = first?.path ? first.path.replace(/^\//, "").replaceAll("/", ".") : "answer";
  return { ok: false, problem: `${where}: ${first?.message ?? "does not match the schema"}` };
}

/**
 * JSON.parse, then once more with control characters turned into spaces: llama-cpp-python's grammar
 * lets raw newlines into strings (seen with SmolLM2), which JSON forbids there. Outside strings they
 * are whitespace anyway, so the replacement changes nothing else.
 */
function parseLenient(content: string): unknown {
  try {
    return JSON.parse(content);
  } catch (e) {
    const spaced = content.replace(/[\u0000-\u001f]/g, " ");
    if (spaced === content) throw e;
    return JSON.parse(spaced);
  }
}

/** The message that asks the model to fix its answer. */
export function repairMessage(problem: string): string {
  return `That answer is invalid: ${problem}. Reply again with only one JSON object with exactly these fields: ` +
    '"tags" (1 to 5 short strings), "score" (integer 0-100), "reason" (one sentence).';
}
