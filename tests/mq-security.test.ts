// RocketMQ least privilege and transport, on a private stack started with ACL 2.0 (authentication
// and authorization on the broker and the proxy, a super user) and the proxy's gRPC port presenting
// an openssl self-signed certificate (scripts/stack/auth.ts):
// - the API and a worker run a task as a user whose ACL covers only this namespace's topics and
//   groups (scripts/mq-user.ts, lib/mq/acl.ts), over TLS (MQ_TLS=true, the CA trusted via GRPC_DEFAULT_SSL_ROOTS_FILE_PATH);
// - that user is refused another topic;
// - a wrong secret stops the API at start-up with a clear message (exit 2), instead of 503s forever;
// - without the CA the proxy's certificate is refused (TLS is really in use).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { Publisher } from "../lib/mq.ts";
import { join } from "node:path";
import { deleteMqUser } from "../lib/mq/acl.ts";
import { mqAuthProblem } from "../lib/mq/auth-error.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { privateStack } from "./support/private-stack.ts";
import { freePort, Service, stopAll, waitFor } from "./support/processes.ts";
import { selfSignedCert } from "./support/tls.ts";

const superUser = { accessKey: "admin", accessSecret: randomBytes(12).toString("hex") };
const app = { username: `app${randomBytes(3).toString("hex")}`, password: randomBytes(12).toString("hex") };
const tls = selfSignedCert();
let stack: Awaited<ReturnType<typeof privateStack>>;
let ns: TestNamespace;
let appEnv: Record<string, string>;

beforeAll(async () => {
  stack = await privateStack();
  const r = await stack.stack("up", {
    STACK_MQ_ADMIN: `${superUser.accessKey}:${superUser.accessSecret}`,
    STACK_MQ_TLS_CERT: tls.cert,
    STACK_MQ_TLS_KEY: tls.key,
  });
  if (r.code !== 0) throw new Error(`private stack up failed:\n${r.out}`);
  // Provisioning (topics, groups) is an administrator's job: the super user.
  ns = await createNamespace({ env: { ...stack.endpoints, MQ_ACCESS_KEY: superUser.accessKey, MQ_SECRET_KEY: superUser.accessSecret } });
  // The user of the services, made by the administrators' CLI: exactly our topics and groups.
  const made = Bun.spawnSync(["bun", join(import.meta.dir, "..", "scripts", "mq-user.ts"), "create", app.username], {
    env: { ...ns.env, MQ_USER_PASSWORD: app.password },
  });
  if (made.exitCode !== 0) throw new Error(`mq-user create failed: ${made.stderr}`);
  appEnv = {
    ...ns.env,
    MQ_ACCESS_KEY: app.username,
    MQ_SECRET_KEY: app.password,
    MQ_TLS: "true",
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: tls.cert,
  };
}, 400_000);

afterAll(async () => {
  await stopAll();
  if (ns) await deleteMqUser(ns.admin(), superUser, app.username).catch(() => {});
  await ns?.cleanup().catch(() => {});
  await stack?.destroy();
  rmSync(tls.dir, { recursive: true, force: true });
}, 120_000);

test("a user limited to our topics and groups runs a task end to end, over TLS", async () => {
  const port = freePort();
  const api = new Service("api.ts", { ...appEnv, API_PORT: String(port), API_HOST: "127.0.0.1" });
  const worker = new Service("worker.ts", { ...appEnv, AGENT_DELAY_MS: "100" });
  await Promise.all([api.waitForLog("api listening", 60_000), worker.waitForLog("worker running", 90_000)]);
  const res = await fetch(`http://127.0.0.1:${port}/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: "u", content: "c" }),
  });
  expect(res.status).toBe(202);
  const { task_id } = (await res.json()) as { task_id: string };
  // A delayed task too: the user's ACL covers the delay topic and the group that forwards from it.
  const delayed = await fetch(`http://127.0.0.1:${port}/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: "u", content: "c", delay_ms: 1_500 }),
  });
  expect(delayed.status).toBe(202);
  const later = (await delayed.json()) as { task_id: string; status: string };
  expect(later.status).toBe("scheduled");
  for (const id of [task_id, later.task_id])
    await waitFor(
      async () => ((await (await fetch(`http://127.0.0.1:${port}/tasks/${id}`)).json()) as { status: string }).status === "done",
      90_000,
      () => `task done\n${worker.raw.slice(-15).join("\n")}`,
    );
  await Promise.all([api.stop(), worker.stop()]);
}, 240_000);

test("a wrong secret stops the API at start-up with a clear error", async () => {
  const api = new Service("api.ts", { ...appEnv, MQ_SECRET_KEY: "wrong-secret", API_PORT: String(freePort()), API_HOST: "127.0.0.1" });
  expect(await api.exited).toBe(2);
  const line = api.lines.find((l) => l.level === "error");
  expect(String(line?.msg)).toContain(`refused our credentials (MQ_ACCESS_KEY=${app.username})`);
  expect(api.raw.join("\n")).not.toContain("wrong-secret");
}, 120_000);

test("the user is refused a topic outside its ACL; without the CA the proxy's certificate is refused", async () => {
  const other = `other${randomBytes(3).toString("hex")}`;
  await ns.admin().createTopic({ topic: other, queues: 1 });
  const cfg = parseConfig({ ...appEnv, MQ_TLS: "false" });
  const foreign = new Publisher(cfg, silentLogger, [other]);
  const e = await foreign.start().then(() => undefined, (x) => x);
  await foreign.close();
  // 5.3.3 answers 40100 (UNAUTHORIZED) for a missing permission too; its message names the resource.
  expect(mqAuthProblem(e, cfg)).toContain(`no permission to access Topic:${other}`);

  // This process never set GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: the self-signed certificate is not trusted.
  const untrusted = new Publisher(parseConfig({ ...appEnv, MQ_TLS: "true" }), silentLogger, [ns.requestTopic]);
  const e2 = await untrusted.start().then(() => undefined, (x) => x);
  await untrusted.close();
  expect(e2).toBeInstanceOf(Error);
  expect(mqAuthProblem(e2, cfg)).toBeUndefined();
}, 120_000);
