// rediss://: the API and a worker talk to a Redis that serves TLS only (Debian's redis-server is
// built with TLS), trusting its self-signed certificate through REDIS_TLS_CA_FILE. Without that CA
// the certificate is refused: the API answers 503, it never falls back to plain text.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { readFileSync, rmSync } from "node:fs";
import { connect } from "node:tls";
import { freePort, Service, waitFor } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";
import { selfSignedCert } from "./support/tls.ts";

let sys: TestSystem;
let redis: Subprocess;
let tls: ReturnType<typeof selfSignedCert>;
let port: number;

/** Whether a TLS handshake with the server succeeds trusting `ca`. */
const handshake = (ca: Buffer) =>
  new Promise<boolean>((resolve) => {
    const s = connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => (s.end(), resolve(true)));
    s.on("error", () => resolve(false));
  });

beforeAll(async () => {
  sys = await testSystem();
  tls = selfSignedCert();
  port = freePort();
  redis = Bun.spawn([
    "redis-server", "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1",
    "--tls-cert-file", tls.cert, "--tls-key-file", tls.key, "--tls-ca-cert-file", tls.cert, "--tls-auth-clients", "no",
    "--save", "", "--appendonly", "no", "--dir", tls.dir,
  ], { stdout: "ignore", stderr: "ignore" });
  await waitFor(() => handshake(readFileSync(tls.cert)), 15_000, "redis-server to serve TLS");
});
afterAll(async () => {
  redis?.kill();
  await redis?.exited;
  await sys?.close();
  rmSync(tls.dir, { recursive: true, force: true });
}, 60_000);

test("API and worker over rediss:// with a private CA run a task to done", async () => {
  const env = { ...sys.ns.env, REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_CA_FILE: tls.cert };
  const apiPort = freePort();
  const api = new Service("api.ts", { ...env, API_PORT: String(apiPort), API_HOST: "127.0.0.1" });
  const worker = new Service("worker.ts", { ...env, AGENT_DELAY_MS: "100" });
  await Promise.all([api.waitForLog("api listening"), worker.waitForLog("worker running", 60_000)]);
  const res = await fetch(`http://127.0.0.1:${apiPort}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "u", content: "c" }) });
  expect(res.status).toBe(202);
  const { task_id } = (await res.json()) as { task_id: string };
  await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${apiPort}/tasks/${task_id}`)).json()) as { status: string }).status === "done", 60_000, "task done over TLS");
  await Promise.all([api.stop(), worker.stop()]);
}, 120_000);

test("without the CA the server's certificate is refused: 503, no plain-text fallback", async () => {
  const apiPort = freePort();
  const api = new Service("api.ts", { ...sys.ns.env, REDIS_URL: `rediss://127.0.0.1:${port}`, API_PORT: String(apiPort), API_HOST: "127.0.0.1" });
  await api.waitForLog("api listening");
  const res = await fetch(`http://127.0.0.1:${apiPort}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "u", content: "c" }) });
  expect(res.status).toBe(503);
  expect(((await res.json()) as { error: string }).error).toBe("redis_unavailable");
  await api.stop();
}, 60_000);
