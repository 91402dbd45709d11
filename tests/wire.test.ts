// Wire compatibility with the original Python service: its json.dumps output parses as our request
// message, and what we publish parses in Python into the same fields and types (python3 runs here).
import { describe, expect, test } from "bun:test";
import { ACTION, encodeJson, REQUEST_TAG, RESULT_TAG, type ResultMessage } from "../lib/model.ts";
import { parseRequest } from "../lib/worker/handle.ts";

function python(code: string, input: string): string {
  const p = Bun.spawnSync(["python3", "-c", code], { stdin: Buffer.from(input) });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return p.stdout.toString();
}

describe("wire format", () => {
  test("tags are the original's", () => {
    expect(REQUEST_TAG).toBe("ProfileGen");
    expect(RESULT_TAG).toBe("ProfileResult");
    expect(ACTION).toBe("generate_profile");
  });

  test("a request message as the Python API wrote it (json.dumps, ASCII escapes, spaces) is accepted", () => {
    const id = crypto.randomUUID();
    const bytes = python(
      `import json,sys; d=json.loads(sys.stdin.read()); sys.stdout.write(json.dumps({"task_id": d["id"], "user_id": "user123", "payload": "机械键盘降价了", "action": "generate_profile"}))`,
      JSON.stringify({ id }),
    );
    expect(bytes).toContain("\\u673a"); // Python escapes non-ASCII by default
    const parsed = parseRequest(Buffer.from(bytes));
    expect(parsed).toEqual({ ok: true, msg: { task_id: id, user_id: "user123", payload: "机械键盘降价了", action: "generate_profile" } });
  });

  test("our request and result messages read in Python as the original's fields and types", () => {
    const id = crypto.randomUUID();
    const req = encodeJson({ task_id: id, user_id: "u1", payload: "键盘 ok", action: ACTION });
    const res: ResultMessage = {
      task_id: id, user_id: "u1", result: { tags: ["键盘"], score: 7, reason: "r" }, status: "done", attempts: 1,
      finished_at: new Date().toISOString(),
    };
    const out = python(
      `import json,sys
a,b = sys.stdin.read().split("\\n")
r = json.loads(a.encode("utf-8")); s = json.loads(b.encode("utf-8"))
assert isinstance(r["task_id"], str) and isinstance(r["payload"], str) and r["action"] == "generate_profile"
assert isinstance(s["result"]["tags"], list) and isinstance(s["result"]["score"], int) and isinstance(s["result"]["reason"], str)
print(json.dumps([r["payload"], s["result"]["tags"][0], s["status"]], ensure_ascii=False))`,
      `${req.toString("utf8")}\n${encodeJson(res).toString("utf8")}`,
    );
    expect(JSON.parse(out)).toEqual(["键盘 ok", "键盘", "done"]);
  });
});
