// RocketMQ 5.3 ACL 2.0 users for this system (least privilege), created on every master broker over
// the remoting protocol by a super user (what `mqadmin createUser` / `createAcl` send:
// AUTH_CREATE_USER 3001 with a UserInfo body, AUTH_CREATE_ACL 3006 with an AclInfo body; formats read
// from the 5.3.3 sources, AdminBrokerProcessor and the broker's AclConverter/UserConverter).
// Resources are `Topic:<name>`, `Group:<name>`, a trailing `*` for a prefix; actions Pub, Sub.
import type { Admin } from "../rocketmq/admin.ts";
import { type Credentials, RemotingClient, RemotingError } from "../rocketmq/remoting.ts";

const AUTH_CREATE_USER = 3001;
const AUTH_DELETE_USER = 3003;
const AUTH_CREATE_ACL = 3006;
const AUTH_DELETE_ACL = 3008;

export interface MqUserSpec {
  username: string;
  password: string;
  /** topics (or `prefix*`) the user publishes to and consumes from */
  topics: string[];
  /** consumer groups (or `prefix*`) the user consumes as */
  groups: string[];
}

/** The ACL of a worker/API user: Pub and Sub on its topics, Sub on its groups, nothing else. */
export function aclBody(spec: MqUserSpec) {
  return {
    subject: `User:${spec.username}`,
    policies: [
      {
        policyType: "Custom",
        entries: [
          ...spec.topics.map((t) => ({ resource: `Topic:${t}`, actions: ["Pub", "Sub"], decision: "Allow" })),
          ...spec.groups.map((g) => ({ resource: `Group:${g}`, actions: ["Sub"], decision: "Allow" })),
        ],
      },
    ],
  };
}

async function onEveryMaster(admin: Admin, superUser: Credentials, fn: (c: RemotingClient) => Promise<void>) {
  for (const b of await admin.brokers()) {
    const c = new RemotingClient(b.master, { timeoutMs: admin.timeoutMs, credentials: superUser });
    try {
      await fn(c);
    } finally {
      c.close();
    }
  }
}

const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** Creates the user and its ACL on every master broker (signed by `superUser`). */
export async function createMqUser(admin: Admin, superUser: Credentials, spec: MqUserSpec): Promise<void> {
  await onEveryMaster(admin, superUser, async (c) => {
    await c.request(AUTH_CREATE_USER, { username: spec.username }, {
      body: encode({ username: spec.username, password: spec.password, userType: "Normal", userStatus: "enable" }),
    });
    await c.request(AUTH_CREATE_ACL, { subject: `User:${spec.username}` }, { body: encode(aclBody(spec)) });
  });
}

/** Removes the user's ACL and the user; an absent one is not an error. */
export async function deleteMqUser(admin: Admin, superUser: Credentials, username: string): Promise<void> {
  await onEveryMaster(admin, superUser, async (c) => {
    for (const [code, ext] of [[AUTH_DELETE_ACL, { subject: `User:${username}` }], [AUTH_DELETE_USER, { username }]] as const)
      await c.request(code, ext).catch((e) => {
        if (!(e instanceof RemotingError && e.kind === "response")) throw e;
      });
  });
}
