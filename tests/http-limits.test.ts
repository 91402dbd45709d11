// The HTTP limits against the real server (`bun api.ts` as a child process, a real socket), not
// app.handle: a body over the limit is refused with the JSON error whether its size is declared
// (Content-Length) or not (chunked), and the server goes on serving after bad input.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { createNamespace, type TestNamespace } from "./helpers.ts";
import { freePort, Service, stopAll } from "./support/processes.ts";

let ns: TestNamespace;
let api: Service;
let port: number;
// MAX_CONTENT_BYTES 1024: the body limit is 6 x 1024 + 4096 = 10 240 bytes (README, error table).
const LIMIT = 6 * 1024 + 4096;

beforeAll(async () => {
  ns = await createNamespace();
  port = freePort();
  api = new Service("api.ts", { ...ns.env, API_PORT: String(port), API_HOST: "127.0.0.1", MAX_CONTENT_BYTES: "1024" });
  await api.waitForLog("api listening", 60_000);
}, 90_000);
afterAll(async () => {
  await stopAll();
  await ns?.cleanup();
}, 60_000);

/** One HTTP/1.1 request written by hand on a socket; the status line, headers and body of the answer. */
function raw(head: string, chunks: (string | Buffer)[]): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    const parts: Buffer[] = [];
    sock.on("error", (e) => (parts.length ? undefined : reject(e))); // a reset after the answer is fine
    sock.on("data", (d) => parts.push(Buffer.from(d)));
    sock.on("close", () => {
      const text = Buffer.concat(parts).toString("utf8");
      const [top, ...rest] = text.split("\r\n\r\n");
      const lines = (top ?? "").split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
      let body = rest.join("\r\n\r\n");
      if (headers["transfer-encoding"] === "chunked") {
        let out = "";
        for (let i = 0; ; ) {
          const nl = body.indexOf("\r\n", i);
          const size = parseInt(body.slice(i, nl), 16);
          if (!size) break;
          out += body.slice(nl + 2, nl + 2 + size);
          i = nl + 2 + size + 2;
        }
        body = out;
      }
      resolve({ status: Number(lines[0]?.split(" ")[1]), headers, body });
    });
    sock.write(head);
    for (const c of chunks) sock.write(c);
  });
}

const json = (r: { body: string }) => JSON.parse(r.body) as { error: string; message: string };

describe("request bodies over the limit, on the real server", () => {
  test("declared by Content-Length: 413 body_too_large, JSON", async () => {
    const body = JSON.stringify({ user_id: "u", content: "y".repeat(LIMIT) });
    const r = await raw(
      `POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      [body],
    );
    expect(r.status).toBe(413);
    expect(r.headers["content-type"]).toContain("application/json");
    expect(json(r).error).toBe("body_too_large");
  });

  test("sent chunked, with no size declared: 413 body_too_large, JSON", async () => {
    const piece = "y".repeat(4096);
    const chunks: string[] = [];
    const open = '{"user_id":"u","content":"';
    chunks.push(`${open.length.toString(16)}\r\n${open}\r\n`);
    for (let sent = 0; sent <= LIMIT; sent += piece.length) chunks.push(`${piece.length.toString(16)}\r\n${piece}\r\n`);
    chunks.push(`2\r\n"}\r\n0\r\n\r\n`);
    const r = await raw(`POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, chunks);
    expect(r.status, JSON.stringify(r)).toBe(413);
    expect(r.headers["content-type"]).toContain("application/json");
    expect(json(r).error).toBe("body_too_large");
  });

  test("a body just under the limit is read (its content is then judged: 413 content_too_large)", async () => {
    const body = JSON.stringify({ user_id: "u", content: "y".repeat(LIMIT - 100) });
    const r = await raw(`POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, [body]);
    expect(r.status).toBe(413);
    expect(json(r).error).toBe("content_too_large");
  });
});

test("after a run of bad requests the same server process still accepts a task", async () => {
  const url = `http://127.0.0.1:${port}/tasks`;
  const bad: [string, Record<string, string>][] = [
    ["{not json", { "content-type": "application/json" }],
    ["", { "content-type": "application/json" }],
    [JSON.stringify({ user_id: 1, content: 2 }), { "content-type": "application/json" }],
    ["user_id=u", { "content-type": "application/x-www-form-urlencoded" }],
    [JSON.stringify({ user_id: "u", content: "z".repeat(2_000) }), { "content-type": "application/json" }],
  ];
  for (const [body, headers] of bad) {
    const res = await fetch(url, { method: "POST", body, headers });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(((await res.json()) as { error: string }).error.length).toBeGreaterThan(0);
  }
  const ok = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "after", content: "still here" }) });
  expect(ok.status).toBe(202);
  expect(api.proc.exitCode).toBeNull();
  expect(api.logs("unhandled error in request").length).toBe(0);
});
