// GET /dashboard: the operators' page (lib/http/dashboard-page.ts), on when ADMIN_TOKEN is set (every
// dashboard route is then a 404 like any unknown path). Who may see it:
// - `Authorization: Bearer <ADMIN_TOKEN>` (scripts, tests), or
// - a browser that logged in at /dashboard/login: the cookie is a session of 12 h, MACed with a key
//   derived from the token (never the token; lib/http/dashboard-session.ts), ended on the server by
//   its expiry or its logout; HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it).
// Tokens are compared in constant time (SHA-256 of both, timingSafeEqual). The one state change,
// POST /dashboard/retry/:id, also wants an `X-Dashboard` header when authorised by the cookie: a
// cross-site form cannot set one, and a cross-site fetch with it needs a CORS preflight we never
// grant. The routes are left out of /docs/json (`detail.hide`): an operator's page, not the API.
import { createHash } from "node:crypto";
import { Elysia } from "elysia";
import type { Config } from "../config.ts";
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { isTaskId } from "../model.ts";
import { adminFor } from "../ops/backlog.ts";
import { OverviewReader } from "../ops/overview.ts";
import { retryTask } from "../ops/tasks.ts";
import type { TaskStore } from "../store.ts";
import type { TaskService } from "../submit.ts";
import { dashboardPage, fragment, loginPage, SCRIPT } from "./dashboard-page.ts";
import { jsonResponse } from "./errors.ts";
import { readCapped } from "./body.ts";
import { isRevoked, mintSession, readSession, revokeSession, sameSecret, SESSION_MS } from "./dashboard-session.ts";

export const COOKIE = "agent_dashboard";
const hide = { detail: { hide: true } } as const;

/** Largest login body: a form or JSON object with one token in it. */
export const LOGIN_BODY_MAX = 4_096;

/** The `token` of a login body: a form (what the login page posts) or, with a JSON content type, a JSON object. */
function loginToken(bytes: Buffer, contentType: string | null): string {
  const text = bytes.toString("utf8");
  if (!/^application\/json\s*(;|$)/i.test(contentType ?? "")) return new URLSearchParams(text).get("token") ?? "";
  try {
    const v = (JSON.parse(text) as { token?: unknown } | null)?.token;
    return typeof v === "string" ? v : "";
  } catch {
    return "";
  }
}

function cookieOf(request: Request, name: string): string | undefined {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

const scriptHash = createHash("sha256").update(SCRIPT, "utf8").digest("base64");
const HTML_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    `default-src 'none'; script-src 'sha256-${scriptHash}'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};
const html = (status: number, body: string, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { ...HTML_HEADERS, ...headers } });

export interface DashboardDeps {
  cfg: Config;
  store: TaskStore;
  tasks: TaskService;
  log: Logger;
}

export function dashboardPlugin({ cfg, store, tasks, log }: DashboardDeps) {
  const app = new Elysia();
  const token = cfg.ADMIN_TOKEN;
  if (!token) return app;
  const admin = adminFor(cfg);
  const overview = new OverviewReader(store, admin, cfg.MQ_TOPIC_REQUEST, cfg.MQ_GROUP_AGENT);

  /** "bearer", "cookie", or undefined: not authorised. Rejects when Redis cannot say whether the session was revoked. */
  const who = async (request: Request): Promise<"bearer" | "cookie" | undefined> => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "");
    if (m && sameSecret(m[1]!, token)) return "bearer";
    const s = readSession(token, cookieOf(request, COOKIE) ?? "");
    if (s && !(await isRevoked(store.redis, store.keys, s))) return "cookie";
    return undefined;
  };
  const unauthorised = () =>
    jsonResponse(401, { error: "unauthorized", message: "the dashboard needs ADMIN_TOKEN: Authorization: Bearer <token>, or log in at /dashboard/login" },
      { "www-authenticate": 'Bearer realm="agent-prod dashboard"' });
  const unavailable = (e: unknown) => {
    log.warn("dashboard: Redis unavailable", { error: toError(e) });
    return jsonResponse(503, { error: "redis_unavailable", message: "Redis is unavailable; retry later" }, { "retry-after": String(cfg.RETRY_AFTER_SECONDS) });
  };
  // Secure when the browser speaks https to us or to the TLS proxy in front (X-Forwarded-Proto).
  // (A prefix test, not new URL(): request.url may be a bare path when the Host header is bad; lib/http/request-url.ts.)
  const secure = (request: Request) => request.url.startsWith("https:") || request.headers.get("x-forwarded-proto") === "https";
  const cookie = (value: string, maxAge: number, request: Request) =>
    `${COOKIE}=${value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure(request) ? "; Secure" : ""}`;

  return app
    .onStop(() => admin.close())
    .get("/dashboard/login", () => html(200, loginPage()), hide)
    .post(
      "/dashboard/login",
      async ({ request }) => {
        // Anyone may post here, without a token: the body is read by us with a small cap (a 413
        // past it), never by Elysia, which would read up to Bun's limit (256 MiB) first.
        const given = loginToken(await readCapped(request, LOGIN_BODY_MAX), request.headers.get("content-type"));
        if (!given || !sameSecret(given, token)) {
          log.warn("dashboard: failed login");
          return html(401, loginPage("wrong token"));
        }
        return new Response(null, {
          status: 303,
          headers: { location: "/dashboard", "set-cookie": cookie(mintSession(token), SESSION_MS / 1000, request), "cache-control": "no-store" },
        });
      },
      { ...hide, parse: "none" },
    )
    .post(
      "/dashboard/logout",
      async ({ request }) => {
        // Revoked in Redis, so a copy of the cookie is refused too. If Redis cannot take it, a 503 and
        // the cookie kept: the operator retries instead of believing the session over.
        const s = readSession(token, cookieOf(request, COOKIE) ?? "");
        if (s) {
          try {
            await revokeSession(store.redis, store.keys, s);
          } catch (e) {
            return unavailable(e);
          }
        }
        return new Response(null, { status: 303, headers: { location: "/dashboard/login", "set-cookie": cookie("", 0, request) } });
      },
      hide,
    )
    .get(
      "/dashboard",
      async ({ request }) => {
        try {
          if (!(await who(request)))
            return (request.headers.get("accept") ?? "").includes("text/html")
              ? new Response(null, { status: 303, headers: { location: "/dashboard/login" } })
              : unauthorised();
          return html(200, dashboardPage(await overview.read()));
        } catch (e) {
          return unavailable(e);
        }
      },
      hide,
    )
    .get(
      "/dashboard/data",
      async ({ request }) => {
        try {
          if (!(await who(request))) return unauthorised();
          const o = await overview.read();
          return jsonResponse(200, { overview: o, html: fragment(o) }, { "cache-control": "no-store" });
        } catch (e) {
          return unavailable(e);
        }
      },
      hide,
    )
    .post(
      "/dashboard/retry/:id",
      async ({ request, params }) => {
        let by;
        try {
          by = await who(request);
        } catch (e) {
          return unavailable(e);
        }
        if (!by) return unauthorised();
        if (by === "cookie" && request.headers.get("x-dashboard") !== "1")
          return jsonResponse(403, { error: "csrf_header_missing", message: "a browser's retry must carry the X-Dashboard: 1 header" });
        if (!isTaskId(params.id)) return jsonResponse(400, { error: "invalid_task_id", message: "task id must be a UUID" });
        let r;
        try {
          r = await retryTask(tasks, params.id);
        } catch (e) {
          return unavailable(e);
        }
        if (r.ok) {
          log.info("dashboard: task re-queued", { task_id: params.id, published: r.published });
          return jsonResponse(200, r);
        }
        return jsonResponse(r.reason === "not_found" ? 404 : 409, { error: r.reason === "not_found" ? "task_not_found" : "not_retryable", message: r.message });
      },
      hide,
    );
}
