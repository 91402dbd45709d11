// A RocketMQ 5.3 (ACL 2.0) user for the API and workers, limited to this system's topics and groups
// (lib/mq/acl.ts): Pub+Sub on MQ_TOPIC_REQUEST, MQ_TOPIC_RESULT, the workers' %DLQ% topic and the
// delayed tasks' topic (<MQ_TOPIC_REQUEST>-delay), Sub on MQ_GROUP_AGENT and its -dlq and -delay groups. Run it as an administrator: MQ_ACCESS_KEY / MQ_SECRET_KEY are the
// super user's; the new user's password comes from MQ_USER_PASSWORD (never from the command line).
//   MQ_USER_PASSWORD=... bun scripts/mq-user.ts create USERNAME
//   bun scripts/mq-user.ts delete USERNAME
// Then run the services with MQ_ACCESS_KEY=USERNAME, MQ_SECRET_KEY=<that password>.
import { loadConfig, mqCredentials } from "../lib/config.ts";
import { createMqUser, deleteMqUser } from "../lib/mq/acl.ts";
import { deadLetterGroup, deadLetterTopic, delayGroup, delayTopic } from "../lib/provision.ts";
import { Admin } from "../lib/rocketmq/admin.ts";

const [command, username] = process.argv.slice(2);
const cfg = loadConfig();
const superUser = mqCredentials(cfg);
if (!username || (command !== "create" && command !== "delete")) {
  console.error("usage: MQ_USER_PASSWORD=... bun scripts/mq-user.ts create USERNAME | delete USERNAME");
  process.exit(2);
}
if (!superUser) {
  console.error("set MQ_ACCESS_KEY and MQ_SECRET_KEY to a RocketMQ super user's");
  process.exit(2);
}
const admin = new Admin({ namesrv: cfg.MQ_NAMESRV, cluster: cfg.MQ_CLUSTER, timeoutMs: cfg.MQ_REQUEST_TIMEOUT_MS, credentials: superUser });
try {
  if (command === "create") {
    const password = process.env.MQ_USER_PASSWORD;
    if (!password) throw new Error("set MQ_USER_PASSWORD to the new user's password");
    const topics = [cfg.MQ_TOPIC_REQUEST, cfg.MQ_TOPIC_RESULT, deadLetterTopic(cfg.MQ_GROUP_AGENT), delayTopic(cfg.MQ_TOPIC_REQUEST)];
    const groups = [cfg.MQ_GROUP_AGENT, deadLetterGroup(cfg.MQ_GROUP_AGENT), delayGroup(cfg.MQ_GROUP_AGENT)];
    await createMqUser(admin, superUser, { username, password, topics, groups });
    console.log(`user ${username}: Pub+Sub on ${topics.join(", ")}; Sub as ${groups.join(", ")}`);
  } else {
    await deleteMqUser(admin, superUser, username);
    console.log(`user ${username} deleted`);
  }
} catch (e) {
  console.error(`mq-user: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  admin.close();
}
