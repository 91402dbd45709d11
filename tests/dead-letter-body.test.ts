// Dead-letters entries keep user content only up to DEAD_LETTER_BODY_CHARS (lib/worker/handle.ts poison()).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseConfig } from "../lib/config.ts";
import { silentLogger } from "../lib/log.ts";
import type { MessageView } from "../lib/mq.ts";
import { closeRedis, connectRedis, createRedis } from "../lib/redis.ts";
import { TaskStore } from "../lib/store.ts";
import { parseRequest, poison } from "../lib/worker/handle.ts";
import { createNamespace, type TestNamespace } from "./helpers.ts";

let ns: TestNamespace;
let redis: ReturnType<typeof createRedis>;
beforeAll(async () => {
  ns = await createNamespace();
  redis = createRedis(ns.config, silentLogger);
  await connectRedis(redis);
});
afterAll(async () => {
  await closeRedis(redis);
  await ns.cleanup();
});

test("a poison message's body is cut to the configured prefix; 0 keeps none", async () => {
  for (const [chars, kept] of [[10, "secret-con"], [0, ""]] as const) {
    const cfg = parseConfig({ ...ns.env, DEAD_LETTER_BODY_CHARS: String(chars) });
    const store = new TaskStore(redis, cfg.TASK_TTL_SECONDS, cfg.REDIS_PREFIX, cfg.STALLED_AFTER_MS);
    const body = Buffer.from("secret-content-of-a-user ".repeat(10));
    const m = { messageId: `m${chars}`, body, deliveryAttempt: 1 } as unknown as MessageView;
    const acked: MessageView[] = [];
    const settler = { ack: async (x: MessageView) => void acked.push(x), hide: async () => {} };
    const parsed = parseRequest(body);
    if (parsed.ok) throw new Error("expected a poison message");
    await poison(m, parsed, { cfg, store, settler, log: silentLogger } as never, new AbortController().signal);
    expect(acked).toEqual([m]);
    const [entry] = await store.deadLetters(1);
    expect(entry!.body).toBe(kept);
  }
});
