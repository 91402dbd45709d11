import { test, expect } from "bun:test";
test("sleeps 6 s", async () => { await Bun.sleep(6000); expect(1).toBe(1); });
