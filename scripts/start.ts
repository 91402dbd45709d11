// `npm start` (or `bun scripts/start.ts`): the whole system on this machine, in the foreground.
// Brings up Redis and RocketMQ (scripts/stack.ts up), provisions topics and the group, then runs the
// API and WORKERS (default 1) worker processes until Ctrl-C, which stops them cleanly. The servers
// keep running afterwards (`bun scripts/stack.ts down` stops them).
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const workers = Number(process.env.WORKERS ?? "1");

function step(args: string[], what: string) {
  const p = Bun.spawnSync(["bun", ...args], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: process.env });
  if (p.exitCode !== 0) {
    console.error(`start: ${what} failed (exit ${p.exitCode}); nothing else was started`);
    process.exit(p.exitCode ?? 1);
  }
}

step([join(ROOT, "scripts/stack.ts"), "up"], "bringing up Redis and RocketMQ");
step([join(ROOT, "scripts/provision.ts")], "provisioning");

const children = [
  Bun.spawn(["bun", join(ROOT, "api.ts")], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: process.env }),
  ...Array.from({ length: workers }, () =>
    Bun.spawn(["bun", join(ROOT, "worker.ts")], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: process.env }),
  ),
];
const port = process.env.API_PORT ?? "8000";
console.error(
  `\nstart: API on http://127.0.0.1:${port} (docs /docs), ${workers} worker(s). Try:\n` +
    `  curl -X POST localhost:${port}/tasks -H 'content-type: application/json' -d '{"user_id":"user123","content":"机械键盘降价了"}'\n` +
    `  curl localhost:${port}/tasks/<task_id>\n` +
    `Ctrl-C stops the API and workers; 'bun scripts/stack.ts down' stops Redis and RocketMQ.\n`,
);

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.on(sig, () => {
    // A second signal is passed on too: the children then force their own exit.
    stopping = true;
    for (const c of children) c.kill(sig);
  });

const codes = await Promise.all(children.map((c) => c.exited));
if (!stopping) console.error(`start: a process exited on its own (codes ${codes.join(", ")})`);
process.exit(codes.every((c) => c === 0) ? 0 : 1);
