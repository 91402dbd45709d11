// bun scripts/provision.ts [--dry-run] [--queues N] [--cluster NAME] [--group NAME]... [--delete] [--json] [--wait S]
// Creates (or, with --delete, removes) the request and result topics and the workers' consumer group,
// speaking RocketMQ's remoting protocol to the name server and brokers. Safe to run again: a second run
// reports that nothing changed. Exit codes: 0 done, 1 RocketMQ refused or is unreachable, 2 bad config/flags.
import { parseArgs } from "node:util";
import { loadConfig, mqCredentials } from "../lib/config.ts";
import { deprovision, formatReport, provision, specFromConfig } from "../lib/provision.ts";
import { Admin, AdminError } from "../lib/rocketmq/admin.ts";
import { RemotingError } from "../lib/rocketmq/remoting.ts";

const USAGE = `usage: bun scripts/provision.ts [--dry-run] [--queues N] [--cluster NAME] [--group NAME]... [--delete] [--json] [--wait SECONDS]`;

/** Worth waiting for (--wait): RocketMQ not up yet, or its broker not registered yet. A refusal is final. */
const notReadyYet = (e: unknown) =>
  e instanceof AdminError || (e instanceof RemotingError && e.kind !== "response" && e.kind !== "protocol");

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        "dry-run": { type: "boolean", default: false },
        queues: { type: "string" },
        cluster: { type: "string" },
        group: { type: "string", multiple: true, default: [] },
        delete: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        wait: { type: "string", default: "0" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const cfg = loadConfig();
  const queues = args.queues === undefined ? undefined : Number(args.queues);
  if (queues !== undefined && !(Number.isInteger(queues) && queues >= 1 && queues <= 1024)) {
    console.error(`--queues must be an integer from 1 to 1024, got "${args.queues}"`);
    return 2;
  }
  const waitS = Number(args.wait);
  if (!(Number.isFinite(waitS) && waitS >= 0)) {
    console.error(`--wait takes seconds (0 or more), got "${args.wait}"`);
    return 2;
  }
  const spec = specFromConfig(cfg, { queues, cluster: args.cluster, extraGroups: args.group });
  const admin = new Admin({
    namesrv: cfg.MQ_NAMESRV,
    cluster: spec.cluster,
    timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS,
    credentials: mqCredentials(cfg),
  });
  try {
    const o = { dryRun: args["dry-run"] };
    const deadline = Date.now() + waitS * 1000;
    let report;
    for (;;) {
      try {
        report = args.delete ? await deprovision(admin, spec, o) : await provision(admin, spec, o);
        break;
      } catch (e) {
        if (!notReadyYet(e) || Date.now() >= deadline) throw e;
        if (!args.json) console.error(`waiting for RocketMQ: ${describeError(e, cfg.MQ_NAMESRV)}`);
        await Bun.sleep(2_000);
      }
    }
    console.log(args.json ? JSON.stringify(report) : formatReport(report).join("\n"));
    return 0;
  } catch (e) {
    const message = describeError(e, cfg.MQ_NAMESRV);
    console.error(args.json ? JSON.stringify({ error: message }) : `provisioning failed: ${message}`);
    return 1;
  } finally {
    admin.close();
  }
}

function describeError(e: unknown, namesrv: string): string {
  if (e instanceof RemotingError) {
    if (e.kind === "response") return `${e.addr} refused: ${e.message}`;
    const who = namesrv.split(";").includes(e.addr) ? "name server" : "broker";
    if (e.kind === "protocol") return `${who} ${e.addr} does not speak RocketMQ's remoting protocol (${e.remark})`;
    return `${who} ${e.addr} unreachable (${e.kind}: ${e.remark}); check MQ_NAMESRV and that RocketMQ is running`;
  }
  if (e instanceof AdminError) return e.message;
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
