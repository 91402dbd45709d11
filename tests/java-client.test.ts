// A downstream service on the official Java client (org.apache.rocketmq:rocketmq-client-java 5.x, jars
// resolved by Maven by the test, Java 17, tests/interop/Downstream.java): it sends a request message
// that our worker runs to done, and it receives our result messages, parses them with Jackson and
// finds the original's fields and types.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { interopClassPath, runJava } from "./support/java.ts";
import { Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";

let sys: TestSystem;
let javaGroup: string;
const home = mkdtempSync(join(tmpdir(), "java-client-"));

beforeAll(async () => {
  const jars = interopClassPath();
  sys = await testSystem();
  javaGroup = await sys.ns.addGroup("java", sys.ns.resultTopic);
  await jars;
}, 600_000); // the first run installs the venv / resolves the jars (minutes on a slow registry)
afterAll(async () => {
  await sys?.close();
  rmSync(home, { recursive: true, force: true });
}, 60_000);

test("a Java producer's request runs to done on our worker; a Java consumer reads our results with the original's fields and types", async () => {
  const endpoint = sys.ns.config.MQ_ENDPOINT;
  const worker = new Service("worker.ts", { ...sys.ns.env, AGENT_DELAY_MS: "200" });
  const ours = await sys.tasks.submit({ user_id: "java-downstream", content: "机械键盘降价了" });

  const sent = await runJava("Downstream.java", ["send", endpoint, sys.ns.requestTopic, "java-user"], home);
  if (sent.code !== 0) console.error(sent.out, sent.err.slice(-5000));
  expect(sent.code).toBe(0);
  const fromJava = sent.lines[0]!.task_id as string;

  for (const id of [ours.task_id, fromJava])
    await waitFor(async () => (await sys.store.get(id))?.status === "done", 60_000, () => `task ${id} done\n${worker.raw.slice(-20).join("\n")}`);
  expect(await sys.store.get(fromJava)).toMatchObject({ status: "done", user_id: "java-user", attempts: 1 });

  const got = await runJava("Downstream.java", ["receive", endpoint, sys.ns.resultTopic, javaGroup, ours.task_id, fromJava], home);
  if (got.code !== 0) console.error(got.out, got.err.slice(-5000));
  expect(got.code).toBe(0);
  const byId = new Map(got.lines.map((l) => [l.task_id as string, l]));
  for (const id of [ours.task_id, fromJava])
    expect(byId.get(id)).toMatchObject({ task_id: id, tag: "ProfileResult", keys: [id], status: "done", problems: [] });
  expect(await worker.stop()).toBe(0);
}, 240_000);
