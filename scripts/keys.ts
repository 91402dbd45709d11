// API keys and tenant limits: `bun scripts/keys.ts <command>` (README, "Production checklist").
//   create --tenant NAME [--rate R] [--burst B] [--concurrency C] [--json]   prints the new key once
//   list [--json]                                                             keys (never the secret) and limits
//   revoke KEY_ID
//   update (--tenant NAME | KEY_ID) [--rate R] [--burst B] [--concurrency C] [--json]   0 removes a limit
// Reads REDIS_URL / REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_PREFIX as the services do.
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { ApiKeys, InvalidTenantError, type TenantLimits } from "../lib/tenancy/api-keys.ts";

const USAGE = `usage: bun scripts/keys.ts create --tenant NAME [--rate R] [--burst B] [--concurrency C] [--json]
       bun scripts/keys.ts list [--json]
       bun scripts/keys.ts revoke KEY_ID
       bun scripts/keys.ts update (--tenant NAME | KEY_ID) [--rate R] [--burst B] [--concurrency C] [--json]
  --rate: POST /tasks per second (decimals allowed), --burst: bucket size (default: the rate rounded up),
  --concurrency: tasks of the tenant running at once on all workers; 0 removes a limit`;

function fail(msg: string, code = 2): never {
  console.error(msg);
  process.exit(code);
}

function limitsFrom(v: Record<string, string | boolean | undefined>): TenantLimits {
  const out: TenantLimits = {};
  for (const [field, integer] of [["rate", false], ["burst", true], ["concurrency", true]] as const) {
    const raw = v[field];
    if (raw === undefined) continue;
    const n = Number(raw);
    if (typeof raw !== "string" || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n)))
      fail(`--${field} must be a ${integer ? "whole " : ""}number >= 0, got ${JSON.stringify(raw)}`);
    out[field] = n;
  }
  return out;
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        tenant: { type: "string" },
        rate: { type: "string" },
        burst: { type: "string" },
        concurrency: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail(`${(e as Error).message}\n${USAGE}`);
  }
})();
const [command, arg] = positionals;
if (values.help || !command) fail(USAGE, values.help ? 0 : 2);

const cfg = loadConfig();
const redis = createRedis(cfg, createLogger({ level: "error", format: "pretty" }));
if (!(await connectRedis(redis))) fail("Redis is not reachable (REDIS_URL / REDIS_HOST / REDIS_PORT)", 1);
const keys = new ApiKeys(redis, cfg.REDIS_PREFIX);
const out = (human: string, data: unknown) => console.log(values.json ? JSON.stringify(data) : human);
const limitsText = (l: TenantLimits) =>
  [l.rate ? `rate ${l.rate}/s burst ${l.burst}` : "no rate limit", l.concurrency ? `concurrency ${l.concurrency}` : "no concurrency limit"].join(", ");

try {
  switch (command) {
    case "create": {
      if (!values.tenant) fail(`create needs --tenant NAME\n${USAGE}`);
      const { id, key } = await keys.create(values.tenant, limitsFrom(values));
      const limits = await keys.limits(values.tenant);
      out(`key ${id} for tenant ${values.tenant} (${limitsText(limits)}):\n${key}\nIt is shown only now; store it as a secret.`, {
        id, key, tenant: values.tenant, limits,
      });
      break;
    }
    case "list": {
      const all = await keys.list();
      out(
        all.length
          ? all.map((k) => `${k.id}  ${k.tenant}  created ${k.created_at}${k.revoked_at ? `  REVOKED ${k.revoked_at}` : ""}  ${limitsText(k.limits)}`).join("\n")
          : "no API keys",
        all,
      );
      break;
    }
    case "revoke": {
      if (!arg) fail(`revoke needs KEY_ID\n${USAGE}`);
      if (!(await keys.revoke(arg))) fail(`no key ${arg}`, 1);
      out(`key ${arg} revoked`, { id: arg, revoked: true });
      break;
    }
    case "update": {
      let tenant = values.tenant;
      if (!tenant && arg) tenant = (await keys.get(arg))?.tenant ?? fail(`no key ${arg}`, 1);
      if (!tenant) fail(`update needs --tenant NAME or KEY_ID\n${USAGE}`);
      const limits = await keys.setLimits(tenant, limitsFrom(values));
      out(`tenant ${tenant}: ${limitsText(limits)}`, { tenant, limits });
      break;
    }
    default:
      fail(`unknown command ${command}\n${USAGE}`);
  }
} catch (e) {
  if (e instanceof InvalidTenantError) fail(e.message);
  throw e;
} finally {
  await closeRedis(redis);
}
