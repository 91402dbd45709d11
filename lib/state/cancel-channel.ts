// The cancel channel (lib/keys.ts `cancelChannel`): the API publishes the id of a running task whose
// cancellation was asked; every worker subscribes (lib/worker/cancel-watch.ts).
import { send, type Redis } from "../scripts.ts";

/** Tells the fleet that a running task's cancellation was asked. */
export async function announceCancel(redis: Redis, channel: string, taskId: string): Promise<void> {
  // On Redis Cluster, routed by the channel name: any node forwards PUBLISH to the whole cluster.
  await send(redis, channel, ["PUBLISH", channel, taskId]);
}
