// Structure of compose.yaml (no Docker engine is needed, nor run): the services exist, wait for each
// other in the right order, have healthchecks, and the worker can be scaled.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { API_SHUTDOWN_DEADLINE_MS } from "../lib/shutdown.ts";
import { workerShutdownBudgetMs } from "../lib/worker/loop.ts";

type Service = {
  image?: string;
  command?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  container_name?: string;
  environment?: Record<string, string>;
  restart?: string;
  profiles?: string[];
  networks?: string[] | Record<string, { ipv4_address?: string }>;
  configs?: { source: string; target: string }[];
  volumes?: string[];
  stop_grace_period?: string;
};
const file = await Bun.file(join(import.meta.dir, "..", "compose.yaml")).text();
const compose = Bun.YAML.parse(file) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  configs: Record<string, { content: string }>;
  networks?: Record<string, { ipam?: { config?: { subnet: string }[] } }>;
};
// Services of the default (single-node) system: those without a profile.
const s = Object.fromEntries(Object.entries(compose.services).filter(([, v]) => !v.profiles));
const envExample = await Bun.file(join(import.meta.dir, "..", ".env.example")).text();

test("has every service of the default system", () => {
  expect(Object.keys(s).sort()).toEqual(["api", "provision", "redis", "rmqbroker", "rmqnamesrv", "worker"]);
});

test("RocketMQ is the official 5.3.3 image, the broker runs with its proxy", () => {
  expect(s.rmqnamesrv!.image).toBe("apache/rocketmq:5.3.3");
  expect(s.rmqbroker!.image).toBe("apache/rocketmq:5.3.3");
  expect(s.rmqbroker!.command).toContain("--enable-proxy");
  expect(compose.configs["proxy-json"]!.content).toContain('"grpcServerPort":8081');
  expect(compose.configs["broker-conf"]!.content).toContain("autoCreateTopicEnable=false");
});

test("redis keeps an append-only file and requires the password of .env, which the services use", () => {
  const cmd = s.redis!.command!.join(" ");
  expect(cmd).toContain("--appendonly yes");
  expect(cmd).toContain('--requirepass "$$REDIS_PASSWORD"'); // $$: compose passes one $ to the shell
  expect(s.redis!.environment!.REDIS_PASSWORD).toBe("${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}");
  expect(s.redis!.healthcheck!.test.join(" ")).toContain("REDISCLI_AUTH");
  for (const name of ["provision", "api", "worker"]) expect(s[name]!.environment!.REDIS_PASSWORD).toBe(s.redis!.environment!.REDIS_PASSWORD!);
});

test("only the API's port is published on the host; it binds every interface of its container, with keys", () => {
  for (const [name, svc] of Object.entries(s)) if (name !== "api") expect(svc.ports, name).toBeUndefined();
  expect(s.api!.environment!.API_HOST).toBe("0.0.0.0");
  expect(s.api!.environment!.AUTH_MODE).toBeUndefined(); // auto: keys on 0.0.0.0
});

test("start order: namesrv healthy -> broker healthy -> provision done -> api, worker", () => {
  expect(s.rmqbroker!.depends_on).toEqual({ rmqnamesrv: { condition: "service_healthy" } });
  expect(s.provision!.depends_on).toEqual({ rmqbroker: { condition: "service_healthy" } });
  for (const name of ["api", "worker"]) {
    expect(s[name]!.depends_on!.provision).toEqual({ condition: "service_completed_successfully" });
    expect(s[name]!.depends_on!.redis).toEqual({ condition: "service_healthy" });
  }
  expect(s.provision!.command).toEqual(["sh", "-c", "bun install --frozen-lockfile && bun scripts/provision.ts --wait 120"]);
  expect(s.provision!.restart).toBe("no");
});

test("every long-running service has a healthcheck; provision is one-shot", () => {
  for (const name of ["redis", "rmqnamesrv", "rmqbroker", "api", "worker"]) expect(s[name]!.healthcheck?.test?.length).toBeGreaterThan(0);
  expect(s.provision!.healthcheck).toBeUndefined();
});

test("api and worker run on Bun 1.4.4; api on port 8000, worker scalable", () => {
  for (const name of ["provision", "api", "worker"]) expect(s[name]!.image).toBe("oven/bun:1.4.4");
  expect(s.api!.command).toEqual(["bun", "api.ts"]);
  expect(s.api!.ports).toEqual(["8000:8000"]);
  expect(s.worker!.command).toEqual(["bun", "worker.ts"]);
  expect(s.worker!.container_name).toBeUndefined();
  expect(s.worker!.ports).toBeUndefined();
});

test("service addresses use the variable names of .env.example", () => {
  for (const name of ["provision", "api", "worker"]) {
    const env = s[name]!.environment!;
    for (const key of ["REDIS_HOST", "REDIS_PORT", "MQ_ENDPOINT", "MQ_NAMESRV"]) {
      expect(env[key], `${name}.${key}`).toBeTruthy();
      expect(envExample).toMatch(new RegExp(`^#? ?${key}=`, "m"));
    }
  }
});

/** stop_grace_period in ms; Docker's default, 10 s, when unset. */
function graceMs(svc: Service): number {
  const m = /^(\d+)(s|m)$/.exec(svc.stop_grace_period ?? "10s");
  expect(m).not.toBeNull();
  return Number(m![1]) * (m![2] === "m" ? 60_000 : 1_000);
}

test("the worker's stop_grace_period outlasts its own shutdown budget, so a stop hands tasks back (issue 8 #12)", () => {
  expect(graceMs(s.worker!)).toBeGreaterThan(workerShutdownBudgetMs(parseConfig({})));
});

// Every service running api.ts, in any profile.
const apis = Object.entries(compose.services).filter(([, v]) => v.command?.join(" ") === "bun api.ts");

test("every API service: stop_grace_period above its shutdown deadline, tombstone journal on a named volume of its own", () => {
  expect(apis.map(([name]) => name).sort()).toEqual(["api", "api-cluster"]);
  const sources: string[] = [];
  for (const [name, svc] of apis) {
    // Docker's default 10 s would SIGKILL it before its own 15 s deadline: shutdown cut short.
    expect(graceMs(svc), name).toBeGreaterThan(API_SHUTDOWN_DEADLINE_MS);
    const journal = svc.environment?.API_TOMBSTONE_JOURNAL;
    expect(journal, `${name}: API_TOMBSTONE_JOURNAL (else it goes to the container's /tmp)`).toBeTruthy();
    const mounts = (svc.volumes ?? []).map((v) => v.split(":") as [string, string]);
    expect(mounts.map(([src, dst]) => `${src}:${dst}`), `${name} still mounts the code`).toContain(".:/app");
    const mount = mounts.find(([, dst]) => journal!.startsWith(`${dst}/`));
    expect(mount, `${name}: a volume holding ${journal}`).toBeDefined();
    const [src] = mount!;
    expect(Object.keys(compose.volumes ?? {}), `${name}: ${src} is a named volume`).toContain(src);
    sources.push(src);
  }
  // One journal per API process (lib/tasks/tombstone-journal.ts): the services do not share one.
  expect(new Set(sources).size).toBe(apis.length);
});

// ------------------------------------------------------------------------------ profile "cluster"
const c = Object.fromEntries(Object.entries(compose.services).filter(([, v]) => v.profiles?.includes("cluster")));
const nodes = [1, 2, 3, 4, 5, 6].map((i) => `redis-node-${i}`);
const ipOf = (name: string) => (c[name]!.networks as Record<string, { ipv4_address: string }>).cluster!.ipv4_address;
const confOf = (svc: string) => compose.configs[c[svc]!.configs![0]!.source]!.content;

test("cluster profile: its services, all in the profile and on its network", () => {
  expect(Object.keys(c).sort()).toEqual(
    [...nodes, "redis-cluster-init", "rmqnamesrv-cluster", "rmqbroker-a", "rmqbroker-b", "rmqproxy", "provision-cluster", "api-cluster", "worker-cluster"].sort(),
  );
  for (const [name, svc] of Object.entries(c)) {
    expect(svc.profiles, name).toEqual(["cluster"]);
    const nets = Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks ?? {});
    expect(nets, name).toEqual(["cluster"]);
  }
  const subnet = compose.networks!.cluster!.ipam!.config![0]!.subnet;
  expect(subnet).toBe("172.30.0.0/24");
});

test("cluster profile: six Redis nodes in cluster mode, joined with one replica per master", () => {
  const ips = nodes.map(ipOf);
  expect(new Set(ips).size).toBe(6);
  for (const n of nodes) {
    const cmd = c[n]!.command!.join(" ");
    expect(cmd).toContain("--cluster-enabled yes");
    expect(cmd).toContain("--appendonly yes");
    expect(c[n]!.healthcheck?.test?.length).toBeGreaterThan(0);
    expect(c["redis-cluster-init"]!.depends_on![n]).toEqual({ condition: "service_healthy" });
  }
  const init = c["redis-cluster-init"]!.command!.join(" ");
  expect(init).toContain(`redis-cli --cluster create ${ips.map((ip) => `${ip}:6379`).join(" ")} --cluster-replicas 1 --cluster-yes`);
  expect(c["redis-cluster-init"]!.restart).toBe("no");
});

test("cluster profile: broker-a and broker-b in one cluster behind a cluster-mode proxy", () => {
  const a = confOf("rmqbroker-a");
  const b = confOf("rmqbroker-b");
  expect(a).toContain("brokerName=broker-a");
  expect(b).toContain("brokerName=broker-b");
  for (const conf of [a, b]) {
    expect(conf).toContain("brokerClusterName=DefaultCluster");
    expect(conf).toContain("brokerId=0");
    expect(conf).toContain("autoCreateTopicEnable=false");
  }
  for (const br of ["rmqbroker-a", "rmqbroker-b"]) {
    expect(c[br]!.image).toBe("apache/rocketmq:5.3.3");
    expect(c[br]!.command!.join(" ")).toContain("mqbroker -c /home/rocketmq/broker.conf -n rmqnamesrv-cluster:9876");
    expect(c[br]!.command).not.toContain("--enable-proxy");
    expect(c[br]!.depends_on).toEqual({ "rmqnamesrv-cluster": { condition: "service_healthy" } });
  }
  const proxy = c.rmqproxy!;
  expect(proxy.command!.join(" ")).toContain("mqproxy -pm cluster");
  const pj = JSON.parse(confOf("rmqproxy"));
  expect(pj.proxyMode).toBe("cluster");
  expect(pj.grpcServerPort).toBe(8081);
  expect(proxy.restart).toBe("on-failure");
  expect(proxy.depends_on).toEqual({ "rmqbroker-a": { condition: "service_healthy" }, "rmqbroker-b": { condition: "service_healthy" } });
});

test("cluster profile: provisioning after the proxy and the Redis cluster, then the API and workers on those engines", () => {
  expect(c["provision-cluster"]!.depends_on).toEqual({
    rmqproxy: { condition: "service_healthy" },
    "redis-cluster-init": { condition: "service_completed_successfully" },
  });
  expect(c["provision-cluster"]!.command).toEqual(s.provision!.command);
  for (const name of ["provision-cluster", "api-cluster", "worker-cluster"]) {
    const env = c[name]!.environment!;
    expect(env.REDIS_CLUSTER_NODES!.split(",")).toEqual(nodes.map((n) => `${ipOf(n)}:6379`));
    expect(env.MQ_ENDPOINT).toBe("rmqproxy:8081");
    expect(env.MQ_NAMESRV).toBe("rmqnamesrv-cluster:9876");
    expect(env.REDIS_HOST, `${name} must not point at the single-node Redis`).toBeUndefined();
    expect(c[name]!.image).toBe("oven/bun:1.4.4");
  }
  for (const name of ["api-cluster", "worker-cluster"])
    expect(c[name]!.depends_on).toEqual({ "provision-cluster": { condition: "service_completed_successfully" } });
  expect(c["worker-cluster"]!.container_name).toBeUndefined();
  expect(c["worker-cluster"]!.ports).toBeUndefined();
  expect((c["worker-cluster"] as { stop_grace_period?: string }).stop_grace_period).toBe((s.worker as { stop_grace_period?: string }).stop_grace_period);
  // Host ports of the cluster profile differ from the default system's, so both can run at once.
  const hostPorts = (svcs: Record<string, Service>) => Object.values(svcs).flatMap((v) => (v.ports ?? []).map((p) => p.split(":")[0]));
  const shared = hostPorts(c).filter((p) => hostPorts(s).includes(p));
  expect(shared).toEqual([]);
});
