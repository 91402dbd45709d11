// Where the integration tests find real Redis and RocketMQ, tried in this order:
//   1. REDIS_URL and MQ_ENDPOINT already in the environment (a developer's or CI's own servers);
//   2. a Docker engine answering `docker info`: containers through testcontainers;
//   3. the plain-process stack, `bun scripts/stack.ts up` (idempotent; needs Java 17 and Maven once).
// Each returns the endpoints and a stop() that undoes only what it started.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export type Services = {
  REDIS_URL: string;
  MQ_ENDPOINT: string;
  MQ_NAMESRV: string;
  source: "env" | "docker" | "stack";
  /** Undoes what this function started; a no-op when it found the services already running. */
  stop: () => Promise<void>;
};

const REPO = join(import.meta.dir, "..");
const STACK = join(REPO, "scripts", "stack.ts");
const noop = async () => {};

async function run(cmd: string[], env = process.env) {
  const p = Bun.spawn(cmd, { cwd: REPO, env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: out + err };
}

async function dockerAnswers(): Promise<boolean> {
  if (!Bun.which("docker")) return false;
  return (await run(["docker", "info"])).code === 0;
}

/**
 * Test runs sharing one stack folder register here (<stack>/users/<pid>), so the run that started
 * the stack does not stop it under another run still using it; the last one out stops it.
 */
function stackUsers(env = process.env) {
  const dir = join(resolve(env.STACK_DIR || join(REPO, ".stack")), "users");
  const startTime = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    } catch {
      return undefined;
    }
  };
  const me = join(dir, String(process.pid));
  return {
    join() {
      mkdirSync(dir, { recursive: true });
      writeFileSync(me, startTime(process.pid) ?? "");
    },
    leave() {
      rmSync(me, { force: true });
    },
    /** Other live runs (a file whose pid is gone or was reused is stale and removed). */
    others(): number[] {
      const live: number[] = [];
      for (const f of readdirSync(dir, { withFileTypes: true })) {
        const pid = Number(f.name);
        if (pid === process.pid || !Number.isInteger(pid)) continue;
        const recorded = readFileSync(join(dir, f.name), "utf8");
        if (startTime(pid) === recorded) live.push(pid);
        else rmSync(join(dir, f.name), { force: true });
      }
      return live;
    },
  };
}

async function fromStack(): Promise<Services> {
  const env = process.env;
  const users = stackUsers(env);
  const port = (v: string | undefined, d: number) => (v ? v.slice(v.lastIndexOf(":") + 1) : String(d));
  const endpoints = {
    REDIS_URL: `redis://127.0.0.1:${env.REDIS_PORT || 6379}`,
    MQ_ENDPOINT: `127.0.0.1:${port(env.MQ_ENDPOINT, 8081)}`,
    MQ_NAMESRV: `127.0.0.1:${port(env.MQ_NAMESRV, 9876)}`,
  };
  // Already fully up (a developer's `bun run stack up`): use it and leave it running.
  if ((await run(["bun", STACK, "status"])).code === 0) {
    users.join();
    return { ...endpoints, source: "stack", stop: async () => users.leave() };
  }
  const up = await run(["bun", STACK, "up"]);
  if (up.code !== 0) throw new Error(`tests need Redis and RocketMQ; \`bun scripts/stack.ts up\` failed:\n${up.out}`);
  console.error(up.out.trimEnd());
  users.join();
  const stop = async () => {
    users.leave();
    if (env.KEEP_STACK === "1") return console.error("KEEP_STACK=1: leaving the stack running");
    const others = users.others();
    if (others.length) return console.error(`leaving the stack running for other test runs (pids ${others.join(", ")})`);
    const down = await run(["bun", STACK, "down"]);
    if (down.code !== 0) console.error(`bun scripts/stack.ts down failed:\n${down.out}`);
  };
  return { ...endpoints, source: "stack", stop };
}

/**
 * Containers: not run on the machine this was written on (no Docker engine there), kept small.
 * The local-mode proxy advertises brokerIP1 and its own gRPC port in routes, and the name server
 * hands out the broker's own address, so both ports are mapped to the same number on the host.
 */
async function fromDocker(): Promise<Services> {
  const { GenericContainer, Network, Wait } = await import("testcontainers");
  const image = "apache/rocketmq:5.3.3";
  const free = async () => {
    const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const p = s.port;
    s.stop(true);
    return p;
  };
  const [grpc, broker] = [await free(), await free()];
  const net = await new Network().start();
  const redis = await new GenericContainer("redis:7-alpine")
    .withCommand(["redis-server", "--appendonly", "yes"])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .start();
  const namesrv = await new GenericContainer(image)
    .withNetwork(net)
    .withNetworkAliases("namesrv")
    .withCommand(["sh", "mqnamesrv"])
    .withExposedPorts(9876)
    .withWaitStrategy(Wait.forLogMessage("The Name Server boot success"))
    .start();
  const brokerConf = [
    "brokerClusterName=DefaultCluster",
    "brokerName=broker-a",
    "brokerId=0",
    "brokerIP1=127.0.0.1",
    `listenPort=${broker}`,
    "autoCreateTopicEnable=false",
    "",
  ].join("\n");
  const proxyJson = JSON.stringify({ rocketMQClusterName: "DefaultCluster", grpcServerPort: grpc });
  const mq = await new GenericContainer(image)
    .withNetwork(net)
    .withEnvironment({ NAMESRV_ADDR: "namesrv:9876", JAVA_OPT_EXT: "-Xms1g -Xmx1g" })
    .withCopyContentToContainer([
      { content: brokerConf, target: "/home/rocketmq/broker.conf" },
      { content: proxyJson, target: "/home/rocketmq/rmq-proxy.json" },
    ])
        // mqbroker --enable-proxy runs ProxyStartup -pm local -bc <the -c file>, passing -pc and -n through.
    .withCommand(["sh", "mqbroker", "--enable-proxy", "-c", "/home/rocketmq/broker.conf", "-pc", "/home/rocketmq/rmq-proxy.json", "-n", "namesrv:9876"])
    .withExposedPorts({ container: grpc, host: grpc }, { container: broker, host: broker })
    .withWaitStrategy(Wait.forLogMessage("rocketmq-proxy startup successfully"))
    .withStartupTimeout(180_000)
    .start();
  return {
    REDIS_URL: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
    MQ_ENDPOINT: `127.0.0.1:${grpc}`,
    MQ_NAMESRV: `${namesrv.getHost()}:${namesrv.getMappedPort(9876)}`,
    source: "docker",
    stop: async () => {
      for (const c of [mq, namesrv, redis]) await c.stop().catch(() => {});
      await net.stop().catch(() => {});
    },
  };
}

export async function startServices(env = process.env): Promise<Services> {
  if (env.REDIS_URL && env.MQ_ENDPOINT)
    return {
      REDIS_URL: env.REDIS_URL,
      MQ_ENDPOINT: env.MQ_ENDPOINT,
      MQ_NAMESRV: env.MQ_NAMESRV || "127.0.0.1:9876",
      source: "env",
      stop: noop,
    };
  if (await dockerAnswers()) return fromDocker();
  return fromStack();
}
