// A self-signed certificate for 127.0.0.1 and localhost, made with openssl for the TLS tests
// (.ci/run installs openssl). It is its own CA: clients trust it by that file.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function selfSignedCert(dir = mkdtempSync(join(tmpdir(), "agent-tls-"))): { dir: string; cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const p = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext", "basicConstraints=critical,CA:TRUE",
  ]);
  if (p.exitCode !== 0) throw new Error(`openssl failed (exit ${p.exitCode}): ${p.stderr.toString()}`);
  return { dir, cert, key };
}
