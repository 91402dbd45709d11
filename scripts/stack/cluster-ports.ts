// Ports of the cluster topology: all derived from one base (STACK_CLUSTER_BASE, default 7000), so a
// second cluster stack (a test's private one) moves every port by changing one number, and the
// cluster topology never shares a port with the single-node one (9876, 8080, 8081, 10909-10912, 6379).
//   base+0 .. base+5     six redis-server nodes (each also binds its cluster bus, port+10000)
//   base+10              name server
//   base+11, base+12     proxy gRPC (clients: MQ_ENDPOINT), proxy remoting
//   base+21, base+31     broker-a, broker-b remoting (each also binds port-2 and port+1)
export type ClusterPorts = {
  base: number;
  redis: number[];
  namesrv: number;
  grpc: number;
  proxyRemoting: number;
  brokers: { name: string; port: number }[];
};

export const DEFAULT_CLUSTER_BASE = 7000;
export const REDIS_NODES = 6;
/** Redis Cluster's bus port is always the data port + 10000. */
export const BUS_OFFSET = 10_000;

export function clusterPorts(base: number): ClusterPorts {
  if (!Number.isInteger(base) || base < 1024 || base + 32 + BUS_OFFSET > 65535)
    throw new Error(`STACK_CLUSTER_BASE=${base}: needs an integer from 1024 to ${65535 - 32 - BUS_OFFSET}`);
  return {
    base,
    redis: Array.from({ length: REDIS_NODES }, (_, i) => base + i),
    namesrv: base + 10,
    grpc: base + 11,
    proxyRemoting: base + 12,
    brokers: [
      { name: "broker-a", port: base + 21 },
      { name: "broker-b", port: base + 31 },
    ],
  };
}

export function clusterPortsFromEnv(env: Record<string, string | undefined> = process.env): ClusterPorts {
  const raw = env.STACK_CLUSTER_BASE;
  return clusterPorts(raw === undefined || raw === "" ? DEFAULT_CLUSTER_BASE : Number(raw));
}

/** Every port a cluster stack binds, for bind checks and for `down`'s closed-port confirmation. */
export function allClusterPorts(p: ClusterPorts): number[] {
  return [
    ...p.redis,
    ...p.redis.map((r) => r + BUS_OFFSET),
    p.namesrv,
    p.grpc,
    p.proxyRemoting,
    ...p.brokers.flatMap((b) => [b.port - 2, b.port, b.port + 1]),
  ];
}
