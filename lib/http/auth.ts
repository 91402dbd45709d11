// API keys on /tasks (AUTH_MODE=keys): `Authorization: Bearer ak_<id>_<secret>`, checked before
// anything else about the request (a caller without a key learns nothing, not even that its body
// is malformed). Checked by one function, at two points: on arrival for a path under /tasks, and
// before the handler of any route under /tasks the first did not cover, since Bun routes the path as
// sent (`/tasks/..` reaches GET /tasks/:id) while request.url holds it normalised (`/`). The tenant
// found becomes the request's `tenant`; a task belongs to the tenant that submitted it, and another
// tenant asking for it by id gets the same 404 as for an unknown id.
import { Elysia } from "elysia";
import { isLoopbackHost } from "../net.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { isTaskId } from "../model.ts";
import type { TaskStore } from "../store.ts";
import type { ApiKeys } from "../tenancy/api-keys.ts";
import { on } from "../tenancy/scripts.ts";
import { pathOf } from "./request-url.ts";

export type AuthMode = "none" | "keys";

export class AuthConfigError extends Error {
  override name = "AuthConfigError";
}

/**
 * The mode the API runs in. `auto` (the default) needs no key on a loopback address only; on any
 * other address it requires keys. `none` on a non-loopback address is allowed only when set
 * explicitly, and is logged as a warning.
 */
export function resolveAuthMode(cfg: Config, log: Logger): AuthMode {
  const loopback = isLoopbackHost(cfg.API_HOST);
  if (cfg.AUTH_MODE === "keys") return "keys";
  if (cfg.AUTH_MODE === "none") {
    if (!loopback)
      log.warn("AUTH_MODE=none on a non-loopback address: anyone who reaches the API can submit and read tasks", { host: cfg.API_HOST });
    return "none";
  }
  return loopback ? "none" : "keys";
}

export interface AuthDeps {
  mode: AuthMode;
  apiKeys?: ApiKeys;
  store: TaskStore;
  retryAfterSeconds: number;
}

const json = (status: number, error: string, message: string, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ error, message }), { status, headers: { "content-type": "application/json", ...headers } });

const guarded = (path: string) => path === "/tasks" || path.startsWith("/tasks/");

/** The tenant that owns a task ("" when it was submitted without a key or is unknown). */
async function ownerOf(store: TaskStore, id: string): Promise<string> {
  return (await on<string | null>(store.redis, "HGET", store.keys.task(id), "tenant")) ?? "";
}

export function authPlugin(deps: AuthDeps) {
  const tenants = new WeakMap<Request, string>();
  const unavailable = () =>
    json(503, "redis_unavailable", "Redis is unavailable; retry later", { "retry-after": String(deps.retryAfterSeconds) });
  /** Finds the request's tenant from its key (kept in `tenants`), or answers the 401 / 503. */
  const authenticate = async (request: Request): Promise<Response | undefined> => {
    const challenge = { "www-authenticate": 'Bearer realm="agent-prod"' };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "");
    if (!m) return json(401, "unauthorized", "an API key is required: Authorization: Bearer <key>", challenge);
    let found;
    try {
      found = await deps.apiKeys!.verify(m[1]!);
    } catch {
      return unavailable();
    }
    if (!found) return json(401, "invalid_api_key", "the API key is unknown or revoked", { ...challenge, "www-authenticate": 'Bearer realm="agent-prod", error="invalid_token"' });
    tenants.set(request, found.tenant);
  };
  return new Elysia({ name: "auth" })
    .onRequest(async ({ request }) => {
      if (deps.mode === "keys" && guarded(pathOf(request.url))) return await authenticate(request);
    })
    .derive({ as: "global" }, ({ request }) => ({ tenant: tenants.get(request) }))
    .onBeforeHandle({ as: "global" }, async (ctx) => {
      const { request, params, route } = ctx;
      // The route Bun chose, which the path in request.url may not show (see the top of this file).
      if (deps.mode === "keys" && guarded(route) && !tenants.has(request)) {
        const refused = await authenticate(request);
        if (refused) return refused;
        (ctx as { tenant?: string }).tenant = tenants.get(request); // derive ran before this
      }
      const tenant = tenants.get(request);
      const id = (params as Record<string, string> | undefined)?.id;
      if (!tenant || !id || !isTaskId(id)) return;
      let owner;
      try {
        owner = await ownerOf(deps.store, id);
      } catch {
        return unavailable();
      }
      if (owner !== tenant) return json(404, "task_not_found", `no task ${id}`);
    });
}

/** In keys mode with no key at all, every /tasks request is a 401: say how to make one. Never throws. */
export async function warnIfNoKeys(mode: AuthMode, apiKeys: ApiKeys, log: Logger): Promise<void> {
  if (mode !== "keys") return;
  const n = await on<number>(apiKeys.redis, "SCARD", apiKeys.keys.apiKeys).then(Number, () => -1);
  if (n === 0) log.warn("API keys are required and none exists yet: create one with `bun scripts/keys.ts create --tenant NAME`");
}
