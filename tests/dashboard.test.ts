// The operators' dashboard (lib/http/dashboard.ts): its access rules in-process (app.handle), then the
// real thing in headless Chromium (Debian's `chromium`, driven by puppeteer-core) against a running
// API and worker: log in through the form, the page loads, its numbers move during a load run of 50
// tasks without a reload, and the Retry button turns a failed task into a done one. A screenshot is
// kept in tests/artifacts/dashboard.png (gitignored). Without chromium the browser test is skipped,
// saying so, except in CI (CI=true), where it must run: .ci/run installs chromium.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COOKIE } from "../lib/http/dashboard.ts";
import { mintSession, readSession, SESSION_MS } from "../lib/http/dashboard-session.ts";
import { createApp } from "../lib/http/app.ts";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import { closeRedis, createRedis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { TaskService } from "../lib/submit.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";
import { testSystem, type TestSystem } from "./support/system.ts";
import { ensureDebianPackage } from "../scripts/stack/apt.ts";

const TOKEN = "dashboard-test-token-0123456789abcdef";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dir, "artifacts");

let sys: TestSystem;
beforeAll(async () => {
  sys = await testSystem();
}, 60_000);
afterAll(async () => {
  await stopAll();
  await sys?.close();
}, 60_000);

describe("access (in-process)", () => {
  const app = (token?: string) =>
    createApp({ cfg: { ...sys.ns.config, ADMIN_TOKEN: token }, store: sys.store, tasks: sys.tasks, log: silentLogger });
  const get = (a: ReturnType<typeof app>, path: string, headers: Record<string, string> = {}) =>
    a.handle(new Request(`http://localhost${path}`, { headers }));

  test("off (404 JSON) without ADMIN_TOKEN, and never in /docs/json", async () => {
    for (const path of ["/dashboard", "/dashboard/login", "/dashboard/data"]) {
      const r = await get(app(), path);
      expect(r.status).toBe(404);
      expect(((await r.json()) as { error: string }).error).toBe("not_found");
    }
    const doc = (await (await get(app(TOKEN), "/docs/json")).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.includes("dashboard"))).toEqual([]);
  });

  test("a Bearer token or the login cookie opens it; anything else is a 401 (or, for a browser, the login page)", async () => {
    const a = app(TOKEN);
    const no = await get(a, "/dashboard/data");
    expect(no.status).toBe(401);
    expect(await no.json()).toMatchObject({ error: "unauthorized" });
    expect((await get(a, "/dashboard/data", { authorization: "Bearer wrong" })).status).toBe(401);
    const browser = await get(a, "/dashboard", { accept: "text/html" });
    expect(browser.status).toBe(303);
    expect(browser.headers.get("location")).toBe("/dashboard/login");

    const data = await get(a, "/dashboard/data", { authorization: `Bearer ${TOKEN}` });
    expect(data.status).toBe(200);
    const d = (await data.json()) as { overview: { counts: object; hour: { minutes: unknown[] } }; html: string };
    expect(d.overview.counts).toMatchObject({ running: 0, done_last_hour: 0 });
    expect(d.overview.hour.minutes).toHaveLength(60);
    expect(d.html).toContain('id="n-done"');

    const form = (token: string) =>
      a.handle(new Request("http://localhost/dashboard/login", {
        method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token }),
      }));
    const bad = await form("nope");
    expect(bad.status).toBe(401);
    expect(await bad.text()).toContain("wrong token");
    const ok = await form(TOKEN);
    expect(ok.status).toBe(303);
    const setCookie = ok.headers.get("set-cookie")!;
    expect(setCookie).toContain("HttpOnly");
    expect(setCookie).toContain("SameSite=Strict");
    expect(setCookie).not.toContain(TOKEN); // an HMAC of the token, never the token
    const cookie = setCookie.split(";")[0]!;
    expect(cookie.startsWith(`${COOKIE}=`)).toBe(true);

    const page = await get(a, "/dashboard", { cookie });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'sha256-");
    expect(await page.text()).toContain("Live workers");

    // The one state change wants the CSRF header when authorised by the cookie.
    const retry = (headers: Record<string, string>, id: string = crypto.randomUUID()) =>
      a.handle(new Request(`http://localhost/dashboard/retry/${id}`, { method: "POST", headers }));
    expect((await retry({ cookie })).status).toBe(403);
    expect((await retry({ cookie, "x-dashboard": "1" })).status).toBe(404); // unknown task
    expect((await retry({})).status).toBe(401);
    expect((await retry({ authorization: `Bearer ${TOKEN}` }, "x")).status).toBe(400);
  });

  const login = async (a: ReturnType<typeof app>) => {
    const r = await a.handle(new Request("http://localhost/dashboard/login", {
      method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: TOKEN }),
    }));
    expect(r.status).toBe(303);
    return r.headers.get("set-cookie")!.split(";")[0]!;
  };
  const expect401 = async (r: Response, what: string) => {
    expect(r.status, what).toBe(401);
    expect(r.headers.get("content-type"), what).toContain("application/json");
    expect(await r.json(), what).toMatchObject({ error: "unauthorized" });
  };

  test("logout ends the session on the server: the old cookie is refused afterwards (a JSON 401), and the record expires with the session", async () => {
    const a = app(TOKEN);
    const cookie = await login(a);
    expect((await get(a, "/dashboard/data", { cookie })).status).toBe(200);
    const out = await a.handle(new Request("http://localhost/dashboard/logout", { method: "POST", headers: { cookie } }));
    expect(out.status).toBe(303);
    expect(out.headers.get("set-cookie")).toContain("Max-Age=0");
    // A copy of the cookie kept from before the logout (the browser dropped its own).
    await expect401(await get(a, "/dashboard/data", { cookie }), "after logout");
    expect((await get(a, "/dashboard", { cookie, accept: "text/html" })).status).toBe(303);
    // The revocation is kept no longer than the session could have lived.
    const s = readSession(TOKEN, cookie.slice(COOKIE.length + 1))!;
    const ttl = await sys.redis.pTTL(sys.store.keys.dashboardRevoked(s.nonce));
    expect(ttl).toBeGreaterThan(SESSION_MS - 60_000);
    expect(ttl).toBeLessThanOrEqual(SESSION_MS + 60_000);
    // Another session is not affected by this logout.
    expect((await get(a, "/dashboard/data", { cookie: await login(a) })).status).toBe(200);
  });

  test("a session older than its 12 h, or issued in the future, is refused; a fresh one minted the same way is accepted", async () => {
    const a = app(TOKEN);
    const at = (issuedAt: number) => ({ cookie: `${COOKIE}=${mintSession(TOKEN, issuedAt)}` });
    expect((await get(a, "/dashboard/data", at(Date.now() - SESSION_MS + 60_000))).status).toBe(200);
    await expect401(await get(a, "/dashboard/data", at(Date.now() - SESSION_MS - 1_000)), "expired");
    await expect401(await get(a, "/dashboard/data", at(Date.now() + 3_600_000)), "from the future");
    // Minted under another token (a rotated ADMIN_TOKEN): refused.
    await expect401(await get(a, "/dashboard/data", { cookie: `${COOKIE}=${mintSession(`${TOKEN}-old`)}` }), "other token");
  });

  test("a tampered cookie is refused: its time, its nonce or its MAC changed", async () => {
    const a = app(TOKEN);
    const value = mintSession(TOKEN, Date.now() - 3_600_000);
    expect((await get(a, "/dashboard/data", { cookie: `${COOKIE}=${value}` })).status).toBe(200);
    const [issuedAt, nonce, mac] = value.split(".") as [string, string, string];
    const flip = (s: string) => (s[0] === "A" ? "B" : "A") + s.slice(1);
    for (const [what, v] of [
      ["later issued-at", `${Number(issuedAt) + 3_600_000}.${nonce}.${mac}`],
      ["other nonce", `${issuedAt}.${flip(nonce)}.${mac}`],
      ["other MAC", `${issuedAt}.${nonce}.${flip(mac)}`],
      ["truncated", value.slice(0, -1)],
      ["empty", ""],
    ] as const)
      await expect401(await get(a, "/dashboard/data", { cookie: `${COOKIE}=${v}` }), what);
  });

  test("Redis down: a cookie's revocation cannot be checked, so it is refused with a JSON 503; logout also answers 503 and keeps the cookie", async () => {
    const cfg = parseConfig({ ...sys.ns.env, REDIS_URL: "redis://127.0.0.1:1", ADMIN_TOKEN: TOKEN });
    const redis = createRedis(cfg, silentLogger); // never connected: every command fails at once
    try {
      const store = TaskStore.fromConfig(redis, cfg);
      const a = createApp({ cfg, store, tasks: new TaskService(cfg, store, sys.publisher, silentLogger), log: silentLogger });
      const cookie = `${COOKIE}=${mintSession(TOKEN)}`;
      // An invalid task id needs no Redis once authorised (a 400): the 503 is the session check's.
      const retry = await a.handle(new Request("http://localhost/dashboard/retry/x", { method: "POST", headers: { cookie, "x-dashboard": "1" } }));
      expect(retry.status).toBe(503);
      expect(await retry.json()).toMatchObject({ error: "redis_unavailable" });
      expect(retry.headers.get("retry-after")).toBeTruthy();
      const out = await a.handle(new Request("http://localhost/dashboard/logout", { method: "POST", headers: { cookie } }));
      expect(out.status).toBe(503);
      expect(out.headers.get("set-cookie")).toBeNull();
      // The Bearer token needs no Redis to be checked.
      expect((await a.handle(new Request("http://localhost/dashboard/retry/x", { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } }))).status).toBe(400);
    } finally {
      await closeRedis(redis).catch(() => {});
    }
  });

  test("a login body over 4 KiB is a JSON 413 naming the limit (with Content-Length or streamed), never parsed; JSON logins still work", async () => {
    const a = app(TOKEN);
    const login = (body: string | ReadableStream<Uint8Array>, headers: Record<string, string>) =>
      a.handle(new Request("http://localhost/dashboard/login", { method: "POST", headers, body }));
    const big = `token=${"x".repeat(1024 * 1024)}`;
    const stream = () => new Blob([big]).stream();
    for (const [what, body, headers] of [
      ["form, Content-Length", big, { "content-type": "application/x-www-form-urlencoded", "content-length": String(big.length) }],
      ["form, streamed", stream(), { "content-type": "application/x-www-form-urlencoded" }],
      ["JSON, streamed", stream(), { "content-type": "application/json" }],
    ] as const) {
      const r = await login(body, headers);
      expect(r.status, what).toBe(413);
      expect(r.headers.get("content-type"), what).toContain("application/json");
      const err = (await r.json()) as { error: string; message: string };
      expect(err.error, what).toBe("body_too_large");
      expect(err.message, what).toContain("4096");
    }
    const json = await login(JSON.stringify({ token: TOKEN }), { "content-type": "application/json" });
    expect(json.status).toBe(303);
    expect((await login(JSON.stringify({ token: "nope" }), { "content-type": "application/json" })).status).toBe(401);
    expect((await login("{", { "content-type": "application/json" })).status).toBe(401);
  });
});

// As root (CI, a fresh machine) `npm test` installs Debian's chromium as the stack installs redis-server.
const haveChromium =
  existsSync(CHROMIUM) || (!process.env.CHROMIUM_PATH && ensureDebianPackage("chromium", "chromium", (l) => console.log(`[dashboard]${l}`)));
if (!haveChromium && !process.env.CI)
  console.warn(`dashboard browser test skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); CI runs it`);

test.skipIf(!haveChromium && !process.env.CI)("in Chromium: log in, numbers update during a load run, Retry turns a failed task done, screenshot", async () => {
  const puppeteer = (await import("puppeteer-core")).default;
  const { ns } = sys;
  // A task that fails for good first (the recording agent fails on #fail; one attempt allowed).
  const failing = new Service("worker.ts", {
    ...ns.env, AGENT: "record", AGENT_RECORD_DIR: mkdtempSync(join(tmpdir(), "dashboard-")), AGENT_DELAY_MS: "0", MAX_ATTEMPTS: "1",
  });
  const { task_id: failed } = await sys.tasks.submit({ user_id: "dash", content: "broken for now #fail" });
  await sys.waitStatus(failed, "failed", 60_000);
  expect(await failing.stop()).toBe(0);

  const port = freePort();
  const api = new Service("api.ts", { ...ns.env, API_PORT: String(port), ADMIN_TOKEN: TOKEN });
  const worker = new Service("worker.ts", { ...ns.env, AGENT_DELAY_MS: "200" });
  await Promise.all([api.waitForLog("api listening", 60_000), worker.waitForLog("worker running", 60_000)]);
  const base = `http://127.0.0.1:${port}`;

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 1400 });
    await page.goto(`${base}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");
    await page.type("input[name=token]", TOKEN);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    expect(new URL(page.url()).pathname).toBe("/dashboard");
    // Page-side checks as strings: they run in the browser (this project's TypeScript has no DOM types).
    const text = (sel: string) => page.$eval(sel, (e: { textContent: string | null }) => e.textContent ?? "");
    await page.waitForFunction(`document.getElementById("n-workers")?.textContent === "1"`, { timeout: 30_000 });
    expect(await text(`#failures tr[data-task="${failed}"] .status`)).toBe("failed");
    const doneBefore = Number(await text("#n-done"));

    // A load run of 50 tasks through the API; the page polls, it is never reloaded.
    const ids: string[] = [];
    for (let i = 0; i < 50; i += 10)
      ids.push(...(await Promise.all(Array.from({ length: 10 }, async (_, j) => {
        const r = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "dash", content: `load ${i + j}` }) });
        expect(r.status).toBe(202);
        return ((await r.json()) as { task_id: string }).task_id;
      }))));
    await page.waitForFunction(`Number(document.getElementById("n-done")?.textContent) >= ${doneBefore + 50}`, { timeout: 90_000, polling: 250 });

    // Retry from the page: the failed task runs again on the (now healthy) worker.
    await page.click(`button[data-retry="${failed}"]`);
    await sys.waitStatus(failed, "done", 60_000);
    await page.waitForFunction(`document.querySelector('#failures tr[data-task="${failed}"] .status')?.textContent === "done"`, { timeout: 30_000 });
    for (const id of ids) expect(await sys.statusOf(id)).toBe("done");

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);
    expect(existsSync(shot)).toBe(true);
  } finally {
    await browser.close();
  }
  expect(await worker.stop()).toBe(0);
  expect(await api.stop()).toBe(0);
}, 240_000);
