// Least privilege in Redis: the API, a worker and the keys CLI run as an ACL user limited to the
// namespace's key prefix and the commands of lib/state/acl.ts (the README's ACL SETUSER line), through
// every path that touches Redis: API keys, the rate limit, tenant concurrency (park, release), the
// LLM budget, a task run, a poison message set aside, a dashboard session and its logout. Redis's ACL LOG must show no denial for the
// user, and the user cannot touch keys outside its prefix nor run other commands.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { createClient } from "redis";
import { aclSetUserArgs } from "../lib/state/acl.ts";
import { freePort, Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

const ROOT = join(import.meta.dir, "..");
let sys: TestSystem;
let admin: ReturnType<typeof createClient>;
const user = `acl-test-${randomBytes(4).toString("hex")}`;
const password = randomBytes(16).toString("hex");
const ADMIN = randomBytes(24).toString("hex"); // the dashboard's token (32+ characters)
let env: Record<string, string>;
const llm = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  // A second an answer: the three tasks overlap, so concurrency 1 parks two of them.
  fetch: async () =>
    (await Bun.sleep(1_000),
    Response.json({ choices: [{ message: { content: JSON.stringify({ tags: ["t"], score: 1, reason: "r" }) } }], usage: { total_tokens: 50 } })),
});

beforeAll(async () => {
  sys = await testSystem();
  admin = createClient({ url: sys.ns.env.REDIS_URL });
  await admin.connect();
  const sha = createHash("sha256").update(password).digest("hex");
  await admin.sendCommand(["ACL", "SETUSER", ...aclSetUserArgs(user, sha, sys.ns.redisPrefix)]);
  const url = new URL(sys.ns.env.REDIS_URL!);
  url.username = user;
  url.password = password;
  env = { ...sys.ns.env, REDIS_URL: url.toString() };
});
afterAll(async () => {
  llm.stop(true);
  await admin?.sendCommand(["ACL", "DELUSER", user]).catch(() => {});
  await admin?.quit();
  await sys?.close();
}, 90_000);

async function denials(): Promise<string[]> {
  const log = (await admin.sendCommand(["ACL", "LOG", "128"])) as unknown[][];
  const out: string[] = [];
  for (const entry of log) {
    const e: Record<string, unknown> = {};
    for (let i = 0; i + 1 < entry.length; i += 2) e[String(entry[i])] = entry[i + 1];
    if (e.username === user) out.push(`${e.reason} ${e.context} ${e.object}`);
  }
  return out;
}

test("API, worker and keys CLI run as the limited ACL user with no denial", async () => {
  const cli = Bun.spawnSync(["bun", join(ROOT, "scripts/keys.ts"), "create", "--tenant", "acl", "--rate", "50", "--concurrency", "1", "--json"], { cwd: ROOT, env });
  expect(cli.exitCode, cli.stderr.toString()).toBe(0);
  const { key } = JSON.parse(cli.stdout.toString()) as { key: string };

  const port = freePort();
  const api = new Service("api.ts", { ...env, API_PORT: String(port), API_HOST: "127.0.0.1", AUTH_MODE: "keys", ADMIN_TOKEN: ADMIN });
  const worker = new Service("worker.ts", {
    ...env, LLM_BASE_URL: `http://127.0.0.1:${llm.port}/v1`, LLM_API_KEY: "sk-x", LLM_RPM: "6000", LLM_TPM: "600000",
  });
  await Promise.all([api.waitForLog("api listening"), worker.waitForLog("worker running", 60_000)]);

  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/tasks`, { method: "POST", headers, body: JSON.stringify({ user_id: "u", content: `c${i}` }) });
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as { task_id: string }).task_id);
  }
  // Concurrency 1: some of the three are parked and released one by one.
  for (const id of ids)
    await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/tasks/${id}`, { headers });
      return ((await r.json()) as { status: string }).status === "done";
    }, 60_000, () => `task ${id} done\n${worker.raw.slice(-10).join("\n")}`);

  expect(worker.logs("task parked: its tenant is at its concurrency limit").length).toBeGreaterThan(0);
  expect(worker.logs("parked task released").length).toBeGreaterThan(0);

  // A message that can never be processed: set aside in the dead-letters list (MULTI, LPUSH, LTRIM).
  await sys.publisher.send({ topic: sys.ns.requestTopic, tag: "ProfileGen", key: "poison", body: Buffer.from("not json") });
  await worker.waitForLog("message set aside: cannot be processed", 30_000);

  // The dashboard's session: each cookie request checks its revocation (EXISTS), a logout writes it (SET PX).
  const base = `http://127.0.0.1:${port}/dashboard`;
  const login = await fetch(`${base}/login`, { method: "POST", redirect: "manual", body: new URLSearchParams({ token: ADMIN }) });
  expect(login.status).toBe(303);
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  expect((await fetch(`${base}/data`, { headers: { cookie } })).status).toBe(200);
  expect((await fetch(`${base}/logout`, { method: "POST", redirect: "manual", headers: { cookie } })).status).toBe(303);
  expect((await fetch(`${base}/data`, { headers: { cookie } })).status).toBe(401);

  expect(await denials()).toEqual([]);
  await Promise.all([api.stop(), worker.stop()]);
}, 180_000);

test("the user cannot read or write outside its prefix, nor run other commands", async () => {
  const url = new URL(env.REDIS_URL!);
  const c = createClient({ url: url.toString() });
  c.on("error", () => {});
  await c.connect();
  try {
    for (const cmd of [["GET", "someone-else:key"], ["SET", "x", "1"], ["KEYS", "*"], ["FLUSHALL"], ["CONFIG", "GET", "*"], ["SCRIPT", "FLUSH"]])
      await expect(c.sendCommand(cmd)).rejects.toThrow(/NOPERM/);
    expect(String(await c.sendCommand(["SET", `${sys.ns.redisPrefix}mine`, "1"]))).toBe("OK");
  } finally {
    await c.quit();
  }
});

test("the README's ACL SETUSER line is the one lib/state/acl.ts builds (REDIS_PREFIX=agent:)", async () => {
  const readme = await Bun.file(join(ROOT, "README.md")).text();
  const line = ["ACL", "SETUSER", ...aclSetUserArgs("agent", "0", "agent:")].join(" ").replace("#0", ">CHANGE-ME");
  expect(readme).toContain(line);
});
