// A TCP relay in front of a server, to slow or stop what a client sends without touching the server
// (the shared Redis must never be paused). `delayMs` holds every chunk the client sends that long
// (order kept); hold() stops forwarding from then on: what the client sends next never arrives.
// blackHole(): a server that accepts connections, reads what comes and never answers (a hung peer).
import { connect, createServer, type Socket } from "node:net";

export async function tcpProxy(target: string, opts: { delayMs?: number } = {}) {
  const url = target.includes("://") ? new URL(target) : new URL(`tcp://${target}`);
  const [host, port] = [url.hostname, Number(url.port)];
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let held = false;
  const server = createServer((client) => {
    const upstream = connect({ host, port });
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (d: Buffer) => {
      if (!held && !upstream.destroyed) upstream.write(d);
    };
    client.on("data", (d: Buffer) => (opts.delayMs ? setTimeout(() => forward(d), opts.delayMs) : forward(d)));
    upstream.on("data", (d: Buffer) => client.write(d));
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, upstream]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    /** host:port of the relay */
    address,
    /** the target URL with the relay's host and port (e.g. redis://127.0.0.1:<relay>) */
    url: target.includes("://") ? `${url.protocol}//${url.username ? `${url.username}:${url.password}@` : ""}${address}${url.pathname === "/" ? "" : url.pathname}` : address,
    /** From now on nothing the clients send reaches the server. */
    hold() {
      held = true;
    },
    /**
     * Forwards again. The connections open during the hold are cut (what their clients sent was
     * dropped, so late replies would pair with the wrong commands): clients reconnect.
     */
    resume() {
      held = false;
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
    },
    close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      server.close();
    },
  };
}

/** Accepts connections on 127.0.0.1, reads and never answers; close() drops them and stops listening. */
export async function blackHole() {
  const held = new Set<Socket>();
  const server = createServer((s) => {
    held.add(s);
    s.on("data", () => {});
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    /** connections accepted so far: a client is now waiting on this peer */
    accepted: () => held.size,
    close() {
      for (const s of held) s.destroy();
      server.close();
    },
  };
}
