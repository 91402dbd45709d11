// The profile summary (scripts/load/profile-summary.ts) on real `bun --cpu-prof` profiles: a process
// that spends its time in JSON.stringify is summed under `native:stringify`, and two profiles give
// their difference. It is how tracing's costs were told apart (docs/observability.md, "Overhead").
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "profile-summary-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A profile of a process that spins `ms` in JSON.stringify, in its own directory. */
async function profileOf(name: string, ms: number): Promise<string> {
  const out = join(dir, name);
  const code = `const o = { a: [1, 2, 3], b: "x".repeat(100) }; const t = performance.now(); let n = 0;
    while (performance.now() - t < ${ms}) n += JSON.stringify(o).length; if (!n) process.exit(1);`;
  const p = Bun.spawn(["bun", "--cpu-prof", `--cpu-prof-dir=${out}`, "-e", code], { stdout: "ignore", stderr: "pipe" });
  expect(await p.exited).toBe(0);
  return out;
}

async function summary(...args: string[]) {
  const p = Bun.spawn(["bun", "scripts/load/profile-summary.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

describe("profile summary", () => {
  test("sums a real profile's samples by place, and gives two profiles' difference", async () => {
    const [short, long] = await Promise.all([profileOf("short", 100), profileOf("long", 400)]);
    const one = await summary(long, "--top", "3");
    expect(one.code).toBe(0);
    const [head, first] = one.out.trim().split("\n");
    expect(head).toMatch(/^\d+ samples$/);
    expect(first).toMatch(/^\s*\d+\s+native:stringify$/);

    const two = await summary(short, long);
    expect(two.code).toBe(0);
    expect(two.out).toMatch(/^\d+ -> \d+ samples \(\+\d+\)/);
    expect(two.out).toMatch(/\n\s*\+\d+\s+native:stringify\n/);
  });

  test("a wrong call is a usage error (exit 2), a missing profile an error (exit 1), not a stack trace", async () => {
    const none = await summary();
    expect(none.code).toBe(2);
    expect(none.err).toContain("usage: bun scripts/load/profile-summary.ts");
    const bad = await summary(dir, "--top", "0");
    expect(bad.code).toBe(2);
    const notOne = await summary(dir); // a directory of directories: no profile of its own
    expect(notOne.code).toBe(1);
    expect(notOne.err).toContain("0 .cpuprofile files, expected one");
  });
});
