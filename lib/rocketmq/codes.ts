// Request and response codes of RocketMQ's remoting protocol that provisioning uses.
// Values from org.apache.rocketmq.remoting.protocol.RequestCode / ResponseCode (rocketmq-all-5.3.3).

export const RequestCode = {
  QUERY_CONSUMER_OFFSET: 14,
  UPDATE_CONSUMER_OFFSET: 15,
  UPDATE_AND_CREATE_TOPIC: 17,
  GET_MAX_OFFSET: 30,
  GET_MIN_OFFSET: 31,
  GET_ROUTEINFO_BY_TOPIC: 105,
  /** Read-only: a group's offsets against the queues' (consumer lag, lib/observe/lag.ts). */
  GET_CONSUME_STATS: 208,
  GET_BROKER_CLUSTER_INFO: 106,
  UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: 200,
  /** Read-only. GET_SUBSCRIPTIONGROUP_CONFIG (352) is not: it auto-creates the group it is asked about
   *  when the broker has autoCreateSubscriptionGroup=true (the default), so a dry run would change state. */
  GET_ALL_SUBSCRIPTIONGROUP_CONFIG: 201,
  DELETE_SUBSCRIPTIONGROUP: 207,
  DELETE_TOPIC_IN_BROKER: 215,
  DELETE_TOPIC_IN_NAMESRV: 216,
  GET_TOPIC_CONFIG: 351,
  /** Batched sends (lib/mq/remoting-batch.ts), not provisioning. */
  SEND_BATCH_MESSAGE: 320,
} as const;
export type RequestCode = (typeof RequestCode)[keyof typeof RequestCode];

export const ResponseCode = {
  SUCCESS: 0,
  SYSTEM_ERROR: 1,
  SYSTEM_BUSY: 2,
  REQUEST_CODE_NOT_SUPPORTED: 3,
  MESSAGE_ILLEGAL: 13,
  SERVICE_NOT_AVAILABLE: 14,
  NO_PERMISSION: 16,
  TOPIC_NOT_EXIST: 17,
  QUERY_NOT_FOUND: 22,
  SUBSCRIPTION_NOT_EXIST: 24,
  SUBSCRIPTION_GROUP_NOT_EXIST: 26,
  INVALID_PARAMETER: 29,
} as const;
export type ResponseCode = (typeof ResponseCode)[keyof typeof ResponseCode];

const responseNames = new Map<number, string>(Object.entries(ResponseCode).map(([k, v]) => [v, k]));
const requestNames = new Map<number, string>(Object.entries(RequestCode).map(([k, v]) => [v, k]));

/** "TOPIC_NOT_EXIST(17)", or just the number for a code this module does not name. */
export function responseCodeName(code: number): string {
  const n = responseNames.get(code);
  return n ? `${n}(${code})` : String(code);
}

export function requestCodeName(code: number): string {
  const n = requestNames.get(code);
  return n ? `${n}(${code})` : String(code);
}

/** Remoting protocol version sent in every header: MQVersion.Version.V5_3_3.ordinal(). Name servers send
 *  strict JSON route data to clients at V4_9_4 (402) or later. */
export const REMOTING_VERSION = 479;
