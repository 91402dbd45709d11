// The RocketMQ client's own log lines, routed into ours (lib/mq.ts clientLogger): its errors come once
// per failed call with the gRPC error's stack, so a broker that is down floods the log. Each kind is
// logged once a minute, first line only, with how many were held back; the rest go to debug.
// (worker.test.ts › the process exits after SIGINT even when RocketMQ was never reachable checks the
// same on a worker whose broker never answers.)
import { expect, test } from "bun:test";
import { createLogger } from "../lib/log.ts";
import { clientLogger } from "../lib/mq.ts";

function captured(level: "info" | "debug" = "info") {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level, format: "json", write: (l) => lines.push(JSON.parse(l)) });
  return { log, lines };
}

// As the client formats a failed receive (rocketmq-client-nodejs 1.0.8, SimpleConsumer).
const receiveFailed = (topic: string) =>
  `Failed to receive messages, topic=${topic}, endpoints=127.0.0.1:8081, clientId=vm@1@0@x, error=Error: 14 UNAVAILABLE: ` +
  `No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:8081.\n    at callErrorFromStatus (call.js:32:23)\n` +
  `    at onReceiveStatus (client.js:359:53)\n{\n  code: 14\n}`;

test("a client error repeated under an outage is one warn line a minute, without its stack, then one with held_back", () => {
  const { log, lines } = captured();
  let now = 0;
  // Two clients of one process (a worker has four) share the limit.
  const [a, b] = [clientLogger(log, () => now), clientLogger(log, () => now)];
  for (let i = 0; i < 30; i++) {
    now += 1_000;
    (i % 2 ? a : b).error(receiveFailed(i % 3 ? "req" : "req-delay"));
  }
  a.error("Startup the rocketmq client failed, clientId=vm@1@0@x");
  expect(lines.map((l) => [l.level, l.msg, l.component])).toEqual([
    ["warn", receiveFailed("req-delay").split("\n")[0], "rocketmq-client"],
    ["warn", "Startup the rocketmq client failed, clientId=vm@1@0@x", "rocketmq-client"],
  ]);
  now += 60_000;
  b.error(receiveFailed("req"));
  expect(lines.at(-1)).toMatchObject({ level: "warn", msg: receiveFailed("req").split("\n")[0], held_back: 29 });
  expect(lines.some((l) => String(l.msg).includes("callErrorFromStatus"))).toBe(false);
});

test("the client's errors held back are still there at LOG_LEVEL=debug; its warnings and info stay at debug", () => {
  const { log, lines } = captured("debug");
  const c = clientLogger(log, () => 0);
  c.error(receiveFailed("req"));
  c.error(receiveFailed("req"));
  c.warn("route refreshed");
  expect(lines.map((l) => l.level)).toEqual(["warn", "debug", "debug"]);
  expect(lines[1]).toMatchObject({ msg: receiveFailed("req").split("\n")[0], component: "rocketmq-client" });
});
