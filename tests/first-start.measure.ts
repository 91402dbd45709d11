// Measures the README's quick start on a fresh private stack: `bun scripts/start.ts` from nothing
// (stack up, provision new topics, api + worker), then the README's POST; prints when each step ended.
import { join } from "node:path";
import { privateStack } from "./support/private-stack.ts";

const ROOT = join(import.meta.dir, "..");
const ps = await privateStack();
const apiPort = 18000 + Math.floor(Math.random() * 1000);
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
delete env.REDIS_URL;
Object.assign(env, {
  STACK_DIR: ps.dir,
  MQ_NAMESRV: ps.endpoints.MQ_NAMESRV,
  MQ_ENDPOINT: ps.endpoints.MQ_ENDPOINT,
  STACK_BROKER_PORT: String(ps.ports.broker),
  STACK_PROXY_REMOTING_PORT: String(ps.ports.proxyRemoting),
  REDIS_PORT: String(ps.ports.redis),
  API_PORT: String(apiPort),
  LOG_FORMAT: "json",
});
const t0 = performance.now();
const at = () => ((performance.now() - t0) / 1000).toFixed(2).padStart(6);
const proc = Bun.spawn(["bun", join(ROOT, "scripts/start.ts")], { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
const lines: string[] = [];
for (const s of [proc.stdout, proc.stderr])
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const c of s) {
      buf += dec.decode(c, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = `${at()} ${buf.slice(0, i)}`;
        buf = buf.slice(i + 1);
        lines.push(line);
        console.log(line.slice(0, 300));
      }
    }
  })();
const base = `http://127.0.0.1:${apiPort}`;
try {
  while (!(await fetch(`${base}/healthz`).then((r) => r.ok, () => false))) await Bun.sleep(50);
  console.log(`${at()} == API answers`);
  const sent = performance.now();
  const res = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "user123", content: "机械键盘降价了" }) });
  const body = (await res.json()) as { task_id: string };
  console.log(`${at()} == POST ${res.status} in ${(performance.now() - sent).toFixed(0)} ms`);
  for (;;) {
    const v = (await (await fetch(`${base}/tasks/${body.task_id}`)).json()) as { status: string };
    if (v.status === "done") break;
    await Bun.sleep(20);
  }
  console.log(`${at()} == FIRST TASK DONE ${((performance.now() - sent) / 1000).toFixed(2)} s after its POST was sent`);
  for (let i = 2; i <= 3; i++) {
    const t = performance.now();
    const r = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "user123", content: "again" }) });
    await r.arrayBuffer();
    console.log(`${at()} == POST #${i} ${r.status} in ${(performance.now() - t).toFixed(0)} ms`);
  }
} finally {
  proc.kill("SIGINT");
  await proc.exited;
  await ps.destroy();
}
