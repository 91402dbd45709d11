// Loaded once per `bun test` run (bunfig.toml [test] preload), before any test file: finds or starts
// real Redis and RocketMQ (tests/services.ts) and publishes their endpoints in process.env, which
// every test file and lib/config.ts read. Hooks registered here are global: the afterAll below runs
// once, after the last test file (https://bun.sh/docs/test/lifecycle, "entire multi-file test run").
import { afterAll, setDefaultTimeout } from "bun:test";
import { startServices } from "./services";

// bunfig.toml's [test] timeout is not applied by bun 1.4.4 (measured: a 7 s test run alone with
// `bun test <file>` died at the 5 s default), so a file run alone gets it here. Bun resets the default
// for each further file of the same run (measured), so `bun test a b` without --timeout gives b 5 s:
// `npm test` / `bun run test` pass --timeout, and slow tests carry their own timeout anyway.
// Integration tests wait on a real broker: time enough, never a timed assertion.
setDefaultTimeout(120_000);

const started = Date.now();
const services = await startServices();
process.env.REDIS_URL = services.REDIS_URL;
process.env.MQ_ENDPOINT = services.MQ_ENDPOINT;
process.env.MQ_NAMESRV = services.MQ_NAMESRV;
if (services.source !== "env")
  console.error(`[preload] services from ${services.source} in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
    `REDIS_URL=${services.REDIS_URL} MQ_ENDPOINT=${services.MQ_ENDPOINT} MQ_NAMESRV=${services.MQ_NAMESRV}`);

// Stops only what the preload itself started (nothing when the services were already running).
// The broker's graceful shutdown alone takes 10-14 s: well over the 5 s default hook timeout.
afterAll(async () => {
  await services.stop();
}, 90_000);
