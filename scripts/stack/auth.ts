// Optional security of the stack's RocketMQ (for tests of least privilege and transport, and for a
// dev stack that looks like production). From the environment of `bun scripts/stack.ts up`:
//   STACK_MQ_ADMIN=user:password   ACL 2.0 (RocketMQ 5.3): authentication and authorization on the
//                                  broker and the proxy; this user is created as the super user, and is
//                                  what the broker's own inner clients sign with. Create other users
//                                  and their ACLs with it (lib/mq/acl.ts).
//   STACK_MQ_TLS_CERT, STACK_MQ_TLS_KEY   PEM certificate and PKCS#8 key the proxy's gRPC port
//                                  presents instead of its built-in self-signed test certificate.
// Keys read from the 5.3.3 sources: AuthConfig (auth/.../config/AuthConfig.java) is loaded from
// broker.conf by BrokerStartup and from the proxy's JSON by proxy Configuration.init; the proxy's TLS
// from ProxyConfig (tlsTestModeEnable, tlsKeyPath, tlsCertPath). The gRPC port stays in the JVM's
// default `tls.server.mode=permissive` (TLS and plain text both accepted): enforcing is a JVM-wide
// switch that would also close the embedded broker's remoting port to plain-text admin clients.
const PROVIDERS = "org.apache.rocketmq.auth";

function admin(env: Record<string, string | undefined>) {
  const v = env.STACK_MQ_ADMIN;
  if (!v) return undefined;
  const i = v.indexOf(":");
  if (i <= 0 || i === v.length - 1) throw new Error("STACK_MQ_ADMIN must be user:password");
  return { username: v.slice(0, i), password: v.slice(i + 1) };
}

/** Extra broker.conf lines. */
export function brokerSecurityLines(env: Record<string, string | undefined> = process.env): string[] {
  const a = admin(env);
  if (!a) return [];
  return [
    "authenticationEnabled=true",
    `authenticationProvider=${PROVIDERS}.authentication.provider.DefaultAuthenticationProvider`,
    `authenticationMetadataProvider=${PROVIDERS}.authentication.provider.LocalAuthenticationMetadataProvider`,
    "authorizationEnabled=true",
    `authorizationProvider=${PROVIDERS}.authorization.provider.DefaultAuthorizationProvider`,
    `authorizationMetadataProvider=${PROVIDERS}.authorization.provider.LocalAuthorizationMetadataProvider`,
    `initAuthenticationUser=${JSON.stringify({ username: a.username, password: a.password })}`,
    `innerClientAuthenticationCredentials=${JSON.stringify({ accessKey: a.username, secretKey: a.password })}`,
  ];
}

/** Extra fields of the proxy's JSON config. In local mode users and ACLs come from the embedded broker. */
export function proxySecurityFields(env: Record<string, string | undefined> = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (admin(env))
    Object.assign(out, {
      authenticationEnabled: true,
      authenticationProvider: `${PROVIDERS}.authentication.provider.DefaultAuthenticationProvider`,
      authenticationMetadataProvider: "org.apache.rocketmq.proxy.auth.ProxyAuthenticationMetadataProvider",
      authorizationEnabled: true,
      authorizationProvider: `${PROVIDERS}.authorization.provider.DefaultAuthorizationProvider`,
      authorizationMetadataProvider: "org.apache.rocketmq.proxy.auth.ProxyAuthorizationMetadataProvider",
    });
  if (env.STACK_MQ_TLS_CERT && env.STACK_MQ_TLS_KEY)
    Object.assign(out, { tlsTestModeEnable: false, tlsCertPath: env.STACK_MQ_TLS_CERT, tlsKeyPath: env.STACK_MQ_TLS_KEY });
  return out;
}
