// Oversized bodies against a real API process (not app.handle: the limits that matter are the
// server's). A 2 MiB body, sent with Content-Length and chunked, gets our JSON 413 and the server
// keeps serving; past Bun's backstop limit, what Bun itself answers is recorded here too. Also
// requests without a Host header or with a malformed one, sent raw (fetch always sends a good one).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { parseConfig } from "../lib/config.ts";
import { serverBodyLimit } from "../lib/http/app.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";
import { rawRequest, type RawAnswer } from "./support/raw-http.ts";

const MiB = 1024 * 1024;
let ns: TestNamespace;
let api: Service;
let base: string;
/** A second API of the namespace with API keys required (AUTH_MODE=keys). */
let keysApi: Service;
let keysPort: number;

beforeAll(async () => {
  ns = await createNamespace();
  const port = freePort();
  api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1" });
  base = `http://127.0.0.1:${port}`;
  keysPort = freePort();
  keysApi = new Service("api.ts", { ...ns.env, API_PORT: String(keysPort), API_HOST: "127.0.0.1", AUTH_MODE: "keys" });
  await api.waitForLog("api listening", 60_000);
  await keysApi.waitForLog("api listening", 60_000);
});
afterAll(async () => {
  await stopAll();
  await ns?.cleanup();
});

async function expectJson413(res: Response) {
  expect(res.status).toBe(413);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: string; message: string };
  expect(body.error).toBe("body_too_large");
  expect(body.message).toContain("limit");
}

async function stillServing() {
  const res = await fetch(`${base}/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: "after-413", content: "still serving" }),
  });
  expect(res.status).toBe(202);
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
}

/** A 2 MiB JSON body: a valid task whose content alone is far over the limits. */
const twoMiB = () => Buffer.from(JSON.stringify({ user_id: "big", content: "x".repeat(2 * MiB - 40) }));

describe("oversized bodies on a real server", () => {
  test("2 MiB with Content-Length: JSON 413 body_too_large, then the server keeps serving", async () => {
    const body = twoMiB();
    const res = await fetch(`${base}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(body.length) },
      body,
    });
    await expectJson413(res);
    await stillServing();
  });

  test("2 MiB chunked (no Content-Length): JSON 413 body_too_large once the bytes read pass the limit, then the server keeps serving", async () => {
    const bytes = twoMiB();
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= bytes.length) return c.close();
        c.enqueue(bytes.subarray(sent, sent + 64 * 1024));
        sent += 64 * 1024;
      },
    });
    const res = await fetch(`${base}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: stream });
    await expectJson413(res);
    await stillServing();
  });

  test("past Bun's own limit (a backstop far above ours) Bun answers an empty 413 and closes: measured, documented", async () => {
    const limit = serverBodyLimit(parseConfig(ns.env));
    expect(limit).toBeGreaterThanOrEqual(256 * MiB);
    const port = Number(new URL(base).port);
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () =>
        s.write(`POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${limit + 1}\r\n\r\n{`),
      );
      let got = "";
      s.on("data", (d) => (got += d.toString()));
      s.on("close", () => resolve(got));
      s.on("error", reject);
      setTimeout(() => s.destroy(), 10_000);
    });
    expect(answer).toStartWith("HTTP/1.1 413");
    expect(answer.toLowerCase()).toContain("connection: close");
    expect(answer).not.toContain("{");
    await stillServing();
  });
});

describe("task ids that are not UTF-8 once decoded (raw requests on a real server)", () => {
  // With a trailing slash Bun's own router has no exact match and Elysia's routes the request; its
  // decoder gives `null` for a percent-escape that is not UTF-8 (%FF), where Bun's gives a string.
  test("GET /tasks/%FF/, its events, its cancel, with and without a trailing slash: 400 invalid_task_id JSON, never a 500", async () => {
    const port = Number(new URL(base).port);
    for (const [method, path] of [
      ["GET", "/tasks/%FF"], ["GET", "/tasks/%FF/"], ["GET", "/tasks/%C3%28/"], ["GET", "/tasks/%FF/?wait=1"],
      ["GET", "/tasks/%FF/events"], ["GET", "/tasks/%FF/events/"],
      ["POST", "/tasks/%FF/cancel"], ["POST", "/tasks/%FF/cancel/"],
    ] as const) {
      // A Host as long as a real one: Elysia's router finds the path at the first "/" from index 11 of
      // request.url, so behind `Host: x` it routes a shorter path (a 404/405, not this route).
      const r = await rawRequest(port, `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
      const what = `${method} ${path}: ${r.status} ${r.body}`;
      expect(r.status, what).toBe(400);
      expect(r.headers, what).toContain("content-type: application/json");
      expect(JSON.parse(r.body), what).toMatchObject({ error: "invalid_task_id" });
    }
    // With API keys required, no key: the 401 comes first, as for any task id.
    const r = await rawRequest(keysPort, `GET /tasks/%FF/ HTTP/1.1\r\nHost: 127.0.0.1:${keysPort}\r\nConnection: close\r\n\r\n`);
    expect(r.status, r.body).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({ error: "unauthorized" });
    await stillServing();
  });
});

describe("no Host header, or a malformed one (raw requests on a real server)", () => {
  // Bun hands our code a bare path as request.url for these (or a URL that does not parse).
  const hosts = ["Host: a b\r\n", "Host: x:99999\r\n", "Host: [::1\r\n", "Host: \r\n"];
  const req = (method: string, path: string, host: string, extra = "") =>
    `${method} ${path} HTTP/1.1\r\n${host}Connection: close\r\n${extra}\r\n`;
  /** HTTP/1.0 needs no Host: the request reaches our code without one. */
  const http10 = (method: string, path: string, extra = "") => `${method} ${path} HTTP/1.0\r\n${extra}\r\n`;
  const bodyHeaders = (body?: string) => (body === undefined ? "" : `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n`);

  /** Our JSON, never a 500 nor Bun's HTML error page (which shows a stack and file paths). */
  function ours(r: RawAnswer, what: string) {
    expect(r.status, what).toBeLessThan(500);
    expect(r.headers, what).toContain("content-type: application/json");
    expect(r.body, what).not.toContain("<!doctype");
    return JSON.parse(r.body) as { error?: string; status?: string };
  }

  /** Each request with every bad Host and as HTTP/1.0 without one. */
  async function each(port: number, method: string, path: string, body?: string) {
    const out: [string, RawAnswer][] = [];
    for (const host of hosts)
      out.push([`${method} ${path} ${JSON.stringify(host)}`, await rawRequest(port, req(method, path, host, bodyHeaders(body)) + (body ?? ""))]);
    out.push([`${method} ${path} HTTP/1.0`, await rawRequest(port, http10(method, path, bodyHeaders(body)) + (body ?? ""))]);
    return out;
  }

  test("without API keys: /healthz 200, bad parameters 400, an unknown path 404, a wrong method 405, a bad body 400, all JSON; never a 500", async () => {
    const port = Number(new URL(base).port);
    const expected: [string, string, string | undefined, number, Record<string, string>][] = [
      ["GET", "/healthz", undefined, 200, { status: "ok" }],
      ["GET", "/tasks?limit=0", undefined, 400, { error: "invalid_query" }],
      ["GET", `/tasks/${crypto.randomUUID()}?wait=0`, undefined, 400, { error: "invalid_parameter" }],
      ["GET", `/tasks/${crypto.randomUUID()}/events?last_event_id=x`, undefined, 400, { error: "invalid_parameter" }],
      ["GET", `/tasks/${crypto.randomUUID()}`, undefined, 404, { error: "task_not_found" }],
      ["GET", "/nowhere", undefined, 404, { error: "not_found" }],
      ["DELETE", "/healthz", undefined, 405, { error: "method_not_allowed" }],
      ["POST", "/tasks", "{", 400, { error: "malformed_json" }],
    ];
    for (const [method, path, body, status, want] of expected)
      for (const [what, r] of await each(port, method, path, body)) {
        expect(r.status, what).toBe(status);
        expect(ours(r, what)).toMatchObject(want);
      }
    // HTTP/1.1 without Host is refused by Bun itself (an empty 400, RFC 9112 §3.2) before our code runs.
    const noHost = await rawRequest(port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect(noHost.status).toBe(400);
    expect(noHost.body).toBe("");
    await stillServing();
  });

  test("with API keys: /healthz 200 and every /tasks route 401 JSON without a key; never a 500", async () => {
    for (const [what, r] of await each(keysPort, "GET", "/healthz")) {
      expect(r.status, what).toBe(200);
      expect(ours(r, what)).toEqual({ status: "ok" });
    }
    for (const [method, path, body] of [
      ["POST", "/tasks", "{}"],
      ["GET", "/tasks?user_id=u", undefined],
      ["GET", `/tasks/${crypto.randomUUID()}`, undefined],
      ["GET", `/tasks/${crypto.randomUUID()}/events`, undefined],
    ] as const)
      for (const [what, r] of await each(keysPort, method, path, body)) {
        expect(r.status, what).toBe(401);
        expect(ours(r, what)).toMatchObject({ error: "unauthorized" });
      }
  });
});
