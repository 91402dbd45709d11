// scripts/stack.ts on a second, independent stack (own folder, own free ports), so it can run while the
// shared stack serves the other tests: `up` is idempotent, `status` notices a dead broker/proxy JVM,
// `down` leaves no process and no open port, `up` names a port it cannot bind.
// Each test brings the stack to the state it starts from (up, or down) itself: they run in any order
// (`bun test --randomize tests/stack.test.ts`), one alone (`-t`), or after a failed one.
import { afterAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { portOpen } from "../scripts/stack/ports.ts";
import { isAlive, isOurs } from "../scripts/stack/state.ts";
import { privateStack } from "./support/private-stack.ts";

const priv = await privateStack();
const { dir: DIR, ports: PORTS, stack, records } = priv;
// Starting JVMs on a loaded box takes minutes: more than the preload's 120 s default.
const LONG = 240_000;
/** Live (non-zombie) processes whose command line contains `text`. */
function countProcs(text: string): number {
  let n = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3))) continue;
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").replaceAll("\0", " ").includes(text)) n++;
    } catch {}
  }
  return n;
}
const javaCount = (home: string) => countProcs(`-Duser.home=${home}`);

afterAll(() => priv.destroy(), 90_000);

test("up twice leaves one set of processes", async () => {
  const first = await stack("up");
  expect(first.code, first.out).toBe(0);
  const a = records();
  expect(a.namesrv && a.proxy && a.redis, "all three parts started by this stack").toBeTruthy();
  const second = await stack("up");
  expect(second.code, second.out).toBe(0);
  expect(second.out).not.toContain("started pid");
  const b = records();
  expect([b.namesrv?.pid, b.proxy?.pid, b.redis?.pid]).toEqual([a.namesrv!.pid, a.proxy!.pid, a.redis!.pid]);
  for (const rec of Object.values(b)) expect(isOurs(rec!)).toBe(true);
  expect(javaCount(join(DIR, "namesrv") + " ")).toBe(1);
  expect(javaCount(join(DIR, "broker") + " ")).toBe(1);
  expect((await stack("status")).code).toBe(0);
}, LONG);

test("status exits non-zero and names broker and proxy when their JVM dies", async () => {
  const up = await stack("up");
  expect(up.code, up.out).toBe(0);
  const { proxy } = records();
  process.kill(proxy!.pid, "SIGKILL");
  for (let i = 0; i < 100 && isAlive(proxy!); i++) await Bun.sleep(100);
  const s = await stack("status");
  expect(s.code, s.out).not.toBe(0);
  expect(s.out).toMatch(/not ready: .*broker/);
  expect(s.out).toMatch(/not ready: .*proxy/);
  expect(s.out).not.toMatch(/not ready: .*(namesrv|redis)/);
}, LONG);

test("down leaves no process and no open port", async () => {
  // Bring the proxy back first, so `down` has a full stack (and a graceful JVM shutdown) to stop.
  const up = await stack("up");
  expect(up.code, up.out).toBe(0);
  const before = records();
  const down = await stack("down");
  expect(down.code, down.out).toBe(0);
  for (const rec of Object.values(before)) expect(isAlive(rec!), `${rec!.name} pid ${rec!.pid}`).toBe(false);
  for (const [name, port] of Object.entries(PORTS)) expect(await portOpen(port, 300), `${name} port ${port}`).toBe(false);
  expect(javaCount(DIR)).toBe(0);
  expect(records()).toEqual({ namesrv: undefined, proxy: undefined, redis: undefined });
}, LONG);

test("up refuses a port held by an outgoing connection, names it, and starts no JVM", async () => {
  // The kernel gives an outgoing connection an ephemeral local port; nothing answers there, yet the
  // name server could not bind it (how CI once lost a name server). Take such a port on purpose.
  const srv = createServer(() => {}).listen(0, "127.0.0.1");
  await new Promise((r) => srv.once("listening", r));
  const sock = connect({ host: "127.0.0.1", port: (srv.address() as { port: number }).port });
  await new Promise((r, j) => (sock.once("connect", r), sock.once("error", j)));
  const held = sock.localPort!;
  try {
    const down = await stack("down"); // a running name server would be taken as up, port or not
    expect(down.code, down.out).toBe(0);
    const r = await stack("up", { MQ_NAMESRV: `127.0.0.1:${held}` });
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toContain(`namesrv failed: port ${held} cannot be bound`);
    expect(javaCount(join(DIR, "namesrv") + " ")).toBe(0);
    expect(records().namesrv).toBeUndefined();
  } finally {
    sock.destroy();
    srv.close();
  }
}, LONG);
