// Workers killed in a loop (issue 8, case g): 3,000 tasks while one of three workers is SIGKILLed every
// few seconds and a supervisor starts a new one. No server is touched, so this runs on the shared stack
// in its own namespace. Nothing may be lost, no task may run twice at once, every done task has its result.
import { afterEach, expect, test } from "bun:test";
import { drive } from "../../scripts/load/driver.ts";
import { faultSystem, report, type FaultSystem } from "../support/fault-system.ts";

let sys: FaultSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
}, 120_000);

test("g. workers SIGKILLed and restarted in a loop during a 3,000-task run: 0 lost", async () => {
  sys = await faultSystem({ env: { MQ_INVISIBLE_MS: "10000", AGENT_DELAY_MS: "20" }, supervise: true });
  await sys.startApi();
  await Promise.all([sys.startWorker(), sys.startWorker(), sys.startWorker()]);
  let stop = false;
  let kills = 0;
  const killer = (async () => {
    while (!stop) {
      await Bun.sleep(3_000 + Math.random() * 3_000);
      const alive = sys!.alive();
      if (stop || alive.length === 0) continue;
      await sys!.killWorker(alive[Math.floor(Math.random() * alive.length)]!);
      kills++;
    }
  })();
  try {
    await drive(3_000, { concurrency: 32 }, async (i) => void (await sys!.submit(`task ${i}`)));
    await Bun.sleep(10_000); // kills go on while the tail of the run is processed
  } finally {
    stop = true;
    await killer;
  }
  expect(kills).toBeGreaterThanOrEqual(3);
  await sys.settled(420_000);
  expect(report(await sys.checkInvariants())).toBe("");
}, 900_000);
