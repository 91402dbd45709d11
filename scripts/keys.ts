// API keys and tenant limits: `bun scripts/keys.ts <command>` (README, "Tenants and limits").
//   create --tenant NAME [--rate R] [--burst B] [--concurrency C] [--json]   prints the new key once
//   list [--json]                                                             keys (never the secret) and limits
//   revoke KEY_ID [--json]
//   update (--tenant NAME | KEY_ID) [--rate R] [--burst B] [--concurrency C] [--json]   0 removes a limit
// Reads REDIS_URL / REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_PREFIX as the services do.
// Exit codes as scripts/tasks.ts (lib/ops/cli.ts): 0 ok, 1 no such key, 2 usage (checked before
// connecting, so a typo gives 2 whether Redis is up or not), 3 Redis unreachable or failing (one
// line, no stack trace).
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config.ts";
import { cliRedis, closeWithin, connect, EXIT, failureLine } from "../lib/ops/cli.ts";
import { closeRedis } from "../lib/redis.ts";
import { ApiKeys, InvalidTenantError, TENANT_PATTERN, type TenantLimits } from "../lib/tenancy/api-keys.ts";

const USAGE = `usage: bun scripts/keys.ts create --tenant NAME [--rate R] [--burst B] [--concurrency C] [--json]
       bun scripts/keys.ts list [--json]
       bun scripts/keys.ts revoke KEY_ID [--json]
       bun scripts/keys.ts update (--tenant NAME | KEY_ID) [--rate R] [--burst B] [--concurrency C] [--json]
  --rate: POST /tasks per second (decimals allowed), --burst: bucket size (default: the rate rounded up),
  --concurrency: tasks of the tenant running at once on all workers; 0 removes a limit
exit codes: 0 ok, 1 no such key, 2 usage, 3 Redis unreachable`;

const COMMANDS = ["create", "list", "revoke", "update"];
const LIMITS = ["rate", "burst", "concurrency"] as const;

function usage(problem?: string): never {
  if (problem) console.error(`${problem}\n${USAGE}`);
  else console.log(USAGE);
  process.exit(problem ? EXIT.usage : EXIT.ok);
}

function parse() {
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
    return usage((e as Error).message);
  }
}

function limitsFrom(v: Record<string, string | boolean | undefined>): TenantLimits {
  const out: TenantLimits = {};
  for (const field of LIMITS) {
    const raw = v[field];
    if (raw === undefined) continue;
    const integer = field !== "rate";
    const n = Number(raw);
    if (typeof raw !== "string" || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n)))
      usage(`--${field} must be a ${integer ? "whole " : ""}number >= 0, got ${JSON.stringify(raw)}`);
    out[field] = n;
  }
  return out;
}

/** Every argument checked before connecting: what to do, on which tenant or key, with which limits. */
function checked() {
  const { values, positionals } = parse();
  const [command, arg, extra] = positionals;
  if (values.help) usage();
  if (!command) usage("a command is needed");
  if (!COMMANDS.includes(command)) usage(`unknown command ${JSON.stringify(command)}`);
  const takesId = command === "revoke" || command === "update";
  if (takesId ? extra !== undefined : arg !== undefined) usage(`unexpected argument ${JSON.stringify(takesId ? extra : arg)}`);
  const limitsGiven = LIMITS.filter((f) => values[f] !== undefined);
  if (limitsGiven.length && command !== "create" && command !== "update") usage(`--${limitsGiven[0]} goes with create or update`);
  if (values.tenant !== undefined && command !== "create" && command !== "update") usage("--tenant goes with create or update");
  if (command === "create" && values.tenant === undefined) usage("create needs --tenant NAME");
  if (command === "revoke" && !arg) usage("revoke needs KEY_ID");
  if (command === "update" && !values.tenant === !arg) usage("update needs --tenant NAME or KEY_ID (one of them)");
  if (values.tenant !== undefined && !TENANT_PATTERN.test(values.tenant))
    usage(`--tenant must match ${TENANT_PATTERN}, got ${JSON.stringify(values.tenant)}`);
  return { command, arg, tenant: values.tenant, limits: limitsFrom(values), json: Boolean(values.json) };
}

async function main(): Promise<number> {
  const { command, arg, tenant, limits, json } = checked();
  const cfg = loadConfig();
  const redis = cliRedis(cfg);
  const out = (human: string, data: unknown) => console.log(json ? JSON.stringify(data) : human);
  const noKey = (id: string) => {
    if (json) console.log(JSON.stringify({ error: "key_not_found", id }));
    console.error(`no key ${id}`);
    return EXIT.nothing;
  };
  const limitsText = (l: TenantLimits) =>
    [l.rate ? `rate ${l.rate}/s burst ${l.burst}` : "no rate limit", l.concurrency ? `concurrency ${l.concurrency}` : "no concurrency limit"].join(", ");
  try {
    await connect(redis, cfg);
    const keys = new ApiKeys(redis, cfg.REDIS_PREFIX);
    switch (command) {
      case "create": {
        const { id, key } = await keys.create(tenant!, limits);
        const set = await keys.limits(tenant!);
        out(`key ${id} for tenant ${tenant} (${limitsText(set)}):\n${key}\nIt is shown only now; store it as a secret.`, {
          id, key, tenant, limits: set,
        });
        return EXIT.ok;
      }
      case "list": {
        const all = await keys.list();
        out(
          all.length
            ? all.map((k) => `${k.id}  ${k.tenant}  created ${k.created_at}${k.revoked_at ? `  REVOKED ${k.revoked_at}` : ""}  ${limitsText(k.limits)}`).join("\n")
            : "no API keys",
          all,
        );
        return EXIT.ok;
      }
      case "revoke": {
        if (!(await keys.revoke(arg!))) return noKey(arg!);
        out(`key ${arg} revoked`, { id: arg, revoked: true });
        return EXIT.ok;
      }
      default: {
        // update
        const name = tenant ?? (await keys.get(arg!))?.tenant;
        if (!name) return noKey(arg!);
        const set = await keys.setLimits(name, limits);
        out(`tenant ${name}: ${limitsText(set)}`, { tenant: name, limits: set });
        return EXIT.ok;
      }
    }
  } catch (e) {
    // The tenant's name was checked above; kept for a rule ApiKeys may add.
    if (e instanceof InvalidTenantError) {
      console.error(e.message);
      return EXIT.usage;
    }
    console.error(failureLine(e));
    return EXIT.unreachable;
  } finally {
    await closeWithin([closeRedis(redis)]);
  }
}

process.exit(await main());
