// Prints the `ACL SETUSER` line of a Redis user limited to this system's key prefix and commands
// (lib/state/acl.ts). The password is read from REDIS_ACL_PASSWORD and printed only as its SHA-256.
//   REDIS_ACL_PASSWORD=... bun scripts/redis-acl.ts [--user agent] [--prefix agent:]
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { aclSetUserArgs } from "../lib/state/acl.ts";

const { values } = parseArgs({ options: { user: { type: "string", default: "agent" }, prefix: { type: "string", default: process.env.REDIS_PREFIX || "agent:" } } });
const password = process.env.REDIS_ACL_PASSWORD;
if (!password) {
  console.error("set REDIS_ACL_PASSWORD to the user's password (it is printed only as its SHA-256)");
  process.exit(2);
}
const sha = createHash("sha256").update(password).digest("hex");
console.log(["ACL", "SETUSER", ...aclSetUserArgs(values.user!, sha, values.prefix!)].join(" "));
