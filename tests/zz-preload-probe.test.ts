import { test, expect } from "bun:test";
test("env", () => { console.log("probe", process.env.MQ_ENDPOINT, process.env.REDIS_URL); expect(process.env.MQ_NAMESRV).toBeTruthy(); });
