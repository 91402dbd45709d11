// Structure of compose.yaml (no Docker engine is needed, nor run): the services exist, wait for each
// other in the right order, have healthchecks, and the worker can be scaled.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
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
};
const file = await Bun.file(join(import.meta.dir, "..", "compose.yaml")).text();
const compose = Bun.YAML.parse(file) as { services: Record<string, Service>; configs: Record<string, { content: string }> };
const s = compose.services;
const envExample = await Bun.file(join(import.meta.dir, "..", ".env.example")).text();

test("has every service", () => {
  expect(Object.keys(s).sort()).toEqual(["api", "provision", "redis", "rmqbroker", "rmqnamesrv", "worker"]);
});

test("RocketMQ is the official 5.3.3 image, the broker runs with its proxy on the same host port", () => {
  expect(s.rmqnamesrv!.image).toBe("apache/rocketmq:5.3.3");
  expect(s.rmqbroker!.image).toBe("apache/rocketmq:5.3.3");
  expect(s.rmqbroker!.command).toContain("--enable-proxy");
  expect(s.rmqbroker!.ports).toContain("8081:8081");
  expect(compose.configs["proxy-json"]!.content).toContain('"grpcServerPort":8081');
  expect(compose.configs["broker-conf"]!.content).toContain("autoCreateTopicEnable=false");
});

test("redis keeps an append-only file", () => {
  expect(s.redis!.command!.join(" ")).toContain("--appendonly yes");
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

test("the worker's stop_grace_period outlasts its own shutdown budget, so a stop hands tasks back (issue 8 #12)", () => {
  const grace = String((s.worker as { stop_grace_period?: string }).stop_grace_period ?? "10s");
  const m = /^(\d+)(s|m)$/.exec(grace);
  expect(m).not.toBeNull();
  const ms = Number(m![1]) * (m![2] === "m" ? 60_000 : 1_000);
  expect(ms).toBeGreaterThan(workerShutdownBudgetMs(parseConfig({})));
});
