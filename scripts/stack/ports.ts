// Which ports the stack uses, and the probes that tell whether something answers on them.
// Ports come from the same variables the services read (MQ_NAMESRV, MQ_ENDPOINT, REDIS_PORT), so a
// test can run a second, independent stack just by changing its environment.
import { connect, createServer } from "node:net";
import { readFileSync } from "node:fs";
import { tcpOpen } from "../../lib/net.ts";

export type Ports = {
  namesrv: number;
  /** Proxy gRPC port: what clients use (MQ_ENDPOINT). */
  grpc: number;
  /** Broker remoting port; the broker also opens broker-2 ("fast" channel) and broker+1 (HA). */
  broker: number;
  proxyRemoting: number;
  redis: number;
};

const HOST = "127.0.0.1";

function portFrom(name: string, raw: string | undefined, def: number): number {
  if (raw === undefined || raw === "") return def;
  // MQ_NAMESRV / MQ_ENDPOINT are host:port[;host:port]: the stack runs locally, only the port matters.
  const first = raw.split(";")[0]!.trim();
  const text = first.includes(":") ? first.slice(first.lastIndexOf(":") + 1) : first;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${name}=${JSON.stringify(raw)}: not a port`);
  return n;
}

export function portsFromEnv(env: Record<string, string | undefined> = process.env): Ports {
  const p: Ports = {
    namesrv: portFrom("MQ_NAMESRV", env.MQ_NAMESRV, 9876),
    grpc: portFrom("MQ_ENDPOINT", env.MQ_ENDPOINT, 8081),
    broker: portFrom("STACK_BROKER_PORT", env.STACK_BROKER_PORT, 10911),
    proxyRemoting: portFrom("STACK_PROXY_REMOTING_PORT", env.STACK_PROXY_REMOTING_PORT, 8080),
    redis: portFrom("REDIS_PORT", env.REDIS_PORT, 6379),
  };
  // The broker silently takes broker-2 and broker+1 too; a clash there shows up as a late bind error.
  const taken = [p.namesrv, p.grpc, p.broker - 2, p.broker, p.broker + 1, p.proxyRemoting, p.redis];
  if (new Set(taken).size !== taken.length)
    throw new Error(`stack ports overlap (broker uses ${p.broker - 2}, ${p.broker}, ${p.broker + 1}): ${JSON.stringify(p)}`);
  return p;
}

export const endpoint = (port: number) => `${HOST}:${port}`;

/** True when a TCP connection to 127.0.0.1:port is accepted within timeoutMs. */
export const portOpen = (port: number, timeoutMs = 1000) => tcpOpen(HOST, port, timeoutMs);

/**
 * True when a listener can bind port on all interfaces (as the JVMs do). A connect probe is not
 * enough: a port held as the local end of an outgoing connection refuses connections yet cannot be
 * bound (EADDRINUSE, even with SO_REUSEADDR). That is how a name server died in CI.
 */
export function portBindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host: "0.0.0.0", port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Lowest port the kernel hands out for outgoing connections; ports below it are never taken that way. */
export function ephemeralLow(): number {
  try {
    const n = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    if (Number.isInteger(n) && n > 1024) return n;
  } catch {}
  return 32768;
}

/**
 * Sends an inline PING and returns the first reply line, or undefined when nothing answers.
 * "-NOAUTH ..." still means a Redis answers (one with a password): the caller decides what to do.
 */
export function redisPing(port: number, timeoutMs = 1000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = connect({ host: HOST, port });
    let buf = "";
    const done = (reply: string | undefined) => {
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.on("error", () => {});
      sock.destroy();
      resolve(reply);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.once("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\r\n");
      if (nl >= 0) done(buf.slice(0, nl));
    });
    sock.once("error", () => done(undefined));
    sock.once("close", () => done(buf || undefined));
  });
}

/** Something speaking RESP answers (even "-LOADING" or "-NOAUTH"): never start a second Redis there. */
export const redisAnswers = (reply: string | undefined) => reply !== undefined && /^[-+]/.test(reply);
/** Ready to serve commands (a password-protected server is ready too; the client brings the password). */
export const redisReady = (reply: string | undefined) =>
  reply !== undefined && (reply === "+PONG" || reply.startsWith("-NOAUTH"));

/** Polls `check` until it is true or the deadline passes. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, stopEarly?: () => string | undefined) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return { ok: true as const };
    const why = stopEarly?.();
    if (why) return { ok: false as const, why };
    await Bun.sleep(200);
  }
  return { ok: false as const, why: `not ready after ${Math.round(timeoutMs / 1000)} s` };
}
