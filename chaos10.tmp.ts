// One-off: a private stack, a chaos run against it, the stack removed. Not committed.
import { privateStack } from "./tests/support/private-stack.ts";
const args = process.argv.slice(2);
const stack = await privateStack();
await stack.up();
console.error("private stack up:", stack.dir, JSON.stringify(stack.endpoints));
const t0 = Date.now();
const p = Bun.spawn(["bun", "scripts/chaos.ts", "--dir", stack.dir, "--keep", ...args], {
  env: { ...stack.env, ...stack.endpoints }, stdout: "pipe", stderr: "inherit", stdin: "ignore",
});
const out = await new Response(p.stdout).text();
const code = await p.exited;
console.log(out);
console.error(`chaos exit ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
await stack.destroy();
