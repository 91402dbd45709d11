// The ids of tasks whose client was told 503 and whose tombstone Redis has not taken yet, kept on disk
// beside the API's memory: an API that dies with some pending (a create that landed though its answer
// was lost) writes them at its next start, before its first outbox sweep, instead of leaving those
// tasks to the sweep, which would send and run them (docs/reliability.md, "A refused submit").
// An append-only file of `+<id>` (pending) and `-<id>` (written) lines: appends are cheap on the 503
// path and a partial last line from a crash is ignored. It outlives the process (a crash, an OOM
// kill), not the host's disk: appends are not fsynced. One file per API process: the default name
// holds the port, and the file is rewritten at start-up and removed when nothing is pending.
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Config } from "../config.ts";
import { toError } from "../errors.ts";
import type { Logger } from "../log.ts";

const ID = /^[0-9A-Za-z-]{1,64}$/;

/**
 * API_TOMBSTONE_JOURNAL, or a file of this port and key prefix under the system's temp directory;
 * none on port 0 (a port the system picks names no API that a later process restarts as).
 */
export function journalPath(cfg: Config): string | undefined {
  if (cfg.API_TOMBSTONE_JOURNAL) return cfg.API_TOMBSTONE_JOURNAL;
  if (cfg.API_PORT === 0) return undefined;
  const prefix = cfg.REDIS_PREFIX.replace(/[^0-9A-Za-z_-]/g, "_");
  return join(tmpdir(), "agent-prod", `tombstones-${prefix ? `${prefix}-` : ""}${cfg.API_PORT}.log`);
}

export class TombstoneJournal {
  /** After a failed write: logged once, then the journal is memory only (as before it existed). */
  #broken = false;

  constructor(readonly path: string, private readonly log: Logger) {}

  /** Pending: told 503, the tombstone not written yet. */
  add(id: string) {
    this.#append(`+${id}\n`);
  }

  /** Written (or no longer needed). */
  done(id: string) {
    this.#append(`-${id}\n`);
  }

  /** The ids still pending in the file (none if it does not exist); the file is rewritten to hold only those. */
  recover(): string[] {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.#fail("read", e);
      return [];
    }
    const pending = new Set<string>();
    for (const line of text.split("\n")) {
      const id = line.slice(1);
      if (!ID.test(id)) continue; // a partial line from a crash mid-append
      if (line[0] === "+") pending.add(id);
      else if (line[0] === "-") pending.delete(id);
    }
    const ids = [...pending];
    try {
      if (ids.length === 0) rmSync(this.path, { force: true });
      else {
        const tmp = `${this.path}.${process.pid}.tmp`;
        writeFileSync(tmp, ids.map((id) => `+${id}\n`).join(""));
        renameSync(tmp, this.path);
      }
    } catch (e) {
      this.#fail("rewrite", e);
    }
    return ids;
  }

  /** Nothing pending any more: the file goes. */
  clear() {
    try {
      rmSync(this.path, { force: true });
    } catch (e) {
      this.#fail("remove", e);
    }
  }

  #append(line: string) {
    if (this.#broken) return;
    try {
      appendFileSync(this.path, line);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        try {
          mkdirSync(dirname(this.path), { recursive: true });
          appendFileSync(this.path, line);
          return;
        } catch (again) {
          e = again;
        }
      }
      this.#fail("append to", e);
    }
  }

  #fail(what: string, e: unknown) {
    if (!this.#broken)
      this.log.error(`cannot ${what} the tombstone journal; pending tombstones are kept in memory only, lost if this process dies`, {
        path: this.path, error: toError(e),
      });
    this.#broken = true;
  }
}
