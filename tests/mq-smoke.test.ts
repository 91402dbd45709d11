// rocketmq-client-nodejs 1.0.8 against the real server under Bun: send, receive, change invisible
// duration, ack; and a child process doing the same exits by itself afterwards (no timer or stream
// left running after shutdown()).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { roundtrip } from "./mq-roundtrip.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.4 (5 s default seen): explicit.
const LONG = 120_000;

let ns: TestNamespace;
beforeAll(async () => {
  ns = await createNamespace({ queues: 1 });
}, LONG);
afterAll(async () => {
  await ns?.cleanup();
}, LONG);

test("a Producer's message reaches a SimpleConsumer and is acked", async () => {
  const body = `smoke-${ns.id}-in-process`;
  const r = await roundtrip({ endpoint: ns.config.MQ_ENDPOINT, topic: ns.requestTopic, group: ns.group, body });
  expect(r.receivedId).toBe(r.messageId);
  expect(r.attempt).toBe(1);
}, LONG);

test("a bun process doing the same exits by itself after shutdown()", async () => {
  const body = `smoke-${ns.id}-child`;
  const child = Bun.spawn(
    ["bun", join(import.meta.dir, "mq-roundtrip.ts"), ns.config.MQ_ENDPOINT, ns.requestTopic, ns.group, body],
    { env: ns.env, stdout: "pipe", stderr: "pipe" },
  );
  // Bound: the round trip takes a few seconds; a process kept alive by a client timer never ends.
  const timedOut = Symbol("timeout");
  const outcome = await Promise.race([child.exited, Bun.sleep(60_000).then(() => timedOut)]);
  if (outcome === timedOut) child.kill("SIGKILL");
  const [out, err] = [await new Response(child.stdout).text(), await new Response(child.stderr).text()];
  expect(outcome, `child still running after 60 s; stderr:\n${err}`).not.toBe(timedOut);
  expect(outcome, `child failed; stderr:\n${err}`).toBe(0);
  const r = JSON.parse(out.trim().split("\n").pop()!);
  expect(r.receivedId).toBe(r.messageId);
}, LONG);
