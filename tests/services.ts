// Where the integration tests find real Redis and RocketMQ, tried in this order:
//   1. REDIS_URL and MQ_ENDPOINT already in the environment (a developer's or CI's own servers);
//   2. a Docker engine answering `docker info`: containers through testcontainers;
//   3. the plain-process stack, `bun scripts/stack.ts up` (idempotent; needs Java 17 and Maven once).
// Each returns the endpoints and a stop() that undoes only what it started.
import { join } from "node:path";

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

function run(cmd: string[], env = process.env) {
  const r = Bun.spawnSync(cmd, { cwd: REPO, env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

function dockerAnswers(): boolean {
  if (!Bun.which("docker")) return false;
  return run(["docker", "info"]).code === 0;
}

async function fromStack(): Promise<Services> {
  const env = process.env;
  const port = (v: string | undefined, d: number) => (v ? v.slice(v.lastIndexOf(":") + 1) : String(d));
  const endpoints = {
    REDIS_URL: `redis://127.0.0.1:${env.REDIS_PORT || 6379}`,
    MQ_ENDPOINT: `127.0.0.1:${port(env.MQ_ENDPOINT, 8081)}`,
    MQ_NAMESRV: `127.0.0.1:${port(env.MQ_NAMESRV, 9876)}`,
  };
  // Already fully up (a developer's `bun run stack up`): use it and leave it running.
  if (run(["bun", STACK, "status"]).code === 0) return { ...endpoints, source: "stack", stop: noop };
  const up = run(["bun", STACK, "up"]);
  if (up.code !== 0) throw new Error(`tests need Redis and RocketMQ; \`bun scripts/stack.ts up\` failed:\n${up.out}`);
  console.error(up.out.trimEnd());
  const stop = async () => {
    if (env.KEEP_STACK === "1") return console.error("KEEP_STACK=1: leaving the stack running");
    const down = run(["bun", STACK, "down"]);
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
  if (dockerAnswers()) return fromDocker();
  return fromStack();
}
