// The API and worker processes a chaos run owns: started with the run's environment, their output
// appended to a log file each, and every death noted (the run history needs when a worker died to
// end the runs it held).
import type { Subprocess } from "bun";
import { openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../stack/state.ts";

export type ChildKind = "api" | "worker";

export class Child {
  readonly proc: Subprocess;
  readonly startedAt = Date.now();
  diedAt?: number;
  paused = false;

  constructor(
    readonly kind: ChildKind,
    readonly index: number,
    env: Record<string, string>,
    logDir: string,
    onExit: (c: Child) => void,
  ) {
    const fd = openSync(join(logDir, `${kind}-${index}.log`), "a");
    try {
      this.proc = Bun.spawn(["bun", join(repoRoot, `${kind}.ts`)], {
        cwd: repoRoot,
        env: { ...env, LOG_FORMAT: "json" },
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    void this.proc.exited.then(() => {
      this.diedAt = Date.now();
      onExit(this);
    });
  }

  get pid() {
    return this.proc.pid;
  }
  get alive() {
    return this.diedAt === undefined;
  }
  signal(sig: NodeJS.Signals) {
    if (this.alive) this.proc.kill(sig);
  }
  /** SIGTERM (graceful: a worker hands its tasks back), SIGKILL after `ms`. */
  async stop(ms = 60_000) {
    if (!this.alive) return;
    if (this.paused) this.signal("SIGCONT");
    this.signal("SIGTERM");
    const t = setTimeout(() => this.signal("SIGKILL"), ms);
    await this.proc.exited;
    clearTimeout(t);
  }
}

export class Children {
  readonly all: Child[] = [];
  /** worker pid -> when it died */
  readonly deaths = new Map<number, number>();
  #count = { api: 0, worker: 0 };

  constructor(
    private readonly env: Record<string, string>,
    private readonly logDir: string,
  ) {}

  start(kind: ChildKind): Child {
    const c = new Child(kind, this.#count[kind]++, this.env, this.logDir, (d) => this.deaths.set(d.pid, d.diedAt!));
    this.all.push(c);
    return c;
  }
  live(kind: ChildKind): Child[] {
    return this.all.filter((c) => c.kind === kind && c.alive);
  }
  async stopAll() {
    await Promise.all(this.all.map((c) => c.stop(30_000)));
  }
}
