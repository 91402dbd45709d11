// scripts/chaos.ts, briefly: a 60 s run against a private stack (its Redis and broker JVM are killed,
// stopped and restarted), checking the report's shape and that nothing was lost or run twice at once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { type ChaosReport, formatReport } from "../../scripts/chaos/run.ts";
import { privateStack } from "../support/private-stack.ts";

let stack: Awaited<ReturnType<typeof privateStack>>;

beforeAll(async () => {
  stack = await privateStack();
  await stack.up();
}, 180_000);

afterAll(async () => {
  await stack?.destroy();
}, 180_000);

test("chaos.ts: 60 s of kills, stops and restarts of every part under load; the report shows 0 lost", async () => {
  const p = Bun.spawn(
    ["bun", join(import.meta.dir, "..", "..", "scripts", "chaos.ts"), "--dir", stack.dir, "--duration", "60", "--seed", "22",
      "--gap", "4-8", "--max-pause", "8", "--rate", "5", "--agent-delay-ms", "300", "--invisible-ms", "10000", "--settle", "240", "--json"],
    { env: { ...stack.env, ...stack.endpoints }, stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  let rep: Record<string, unknown>;
  try {
    rep = JSON.parse(out.trim().split("\n").at(-1)!);
  } catch {
    throw new Error(`chaos.ts exited ${code} without a JSON report:\n${out}\n${err}`);
  }
  console.error(formatReport(rep as unknown as ChaosReport));
  for (const k of ["accepted", "refused", "done", "failed", "lost", "duplicate_results", "max_concurrent_runs", "refused_but_ran", "unanswered_but_ran", "faults", "seed"])
    expect(rep, `report field ${k}`).toHaveProperty(k);
  // Seed 22 draws: worker kill, broker stop, worker kill, API kill, Redis restart (as far as 60 s reach).
  expect((rep.faults as unknown[]).length).toBeGreaterThanOrEqual(2);
  expect(rep.accepted as number).toBeGreaterThan(0);
  expect({ lost: rep.lost, problems: rep.problems }).toEqual({ lost: 0, problems: rep.problems });
  expect(rep.max_concurrent_runs as number, JSON.stringify(rep.problems, null, 2)).toBeLessThanOrEqual(1);
}, 600_000);
