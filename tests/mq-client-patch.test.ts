// Our bun patch of rocketmq-client-nodejs (patches/rocketmq-client-nodejs@1.0.8.patch): a topic with
// no writable queue (made read-only, perm 4, or its broker gone) fails a send with the client's own
// "No writable message queue found", not a RangeError from randomInt(0) that names neither. The
// load balancer is built from a route as the client builds it, with no server needed.
import { expect, test } from "bun:test";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { PublishingLoadBalancer } = require("rocketmq-client-nodejs/dist/producer/PublishingLoadBalancer.js") as {
  PublishingLoadBalancer: new (route: { messageQueues: unknown[] }) => unknown;
};

test("a route without a writable queue fails with the client's own message, not a RangeError", () => {
  expect(() => new PublishingLoadBalancer({ messageQueues: [] })).toThrow("No writable message queue found");
});
