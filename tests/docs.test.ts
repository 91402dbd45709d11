// The README and docs/ are what a user reads first: a code block that does not close turns the prose
// after it into code, and a link to a file or section that is not there is a dead end. This checks
// every Markdown file of the project the way GitHub renders it (CommonMark fences, GitHub's heading
// anchors). No servers needed.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { isEventId } from "../lib/tasks/events.ts";

const ROOT = join(import.meta.dir, "..");
const files = [...new Bun.Glob("**/*.md").scanSync({ cwd: ROOT })]
  .filter((f) => !f.split("/").some((part) => part === "node_modules" || part.startsWith(".")))
  .sort();

/** The lines outside fenced code blocks, with their numbers; and the fence lines that cannot close one. */
function scan(text: string) {
  const prose: { n: number; line: string }[] = [];
  const badClosers: string[] = [];
  let open: { n: number; marker: string } | undefined;
  text.split("\n").forEach((line, i) => {
    const fence = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (!open) {
      if (fence) open = { n: i + 1, marker: fence[1]! };
      else prose.push({ n: i + 1, line });
      return;
    }
    if (!fence || fence[1]![0] !== open.marker[0] || fence[1]!.length < open.marker.length) return;
    // CommonMark: a closing fence has nothing after it but spaces; "``` text" is content, and the block runs on.
    if (fence[2]!.trim()) badClosers.push(`line ${i + 1}: "${line.slice(0, 40)}" does not close the block opened on line ${open.n}`);
    else open = undefined;
  });
  if (open) badClosers.push(`the block opened on line ${open.n} never closes`);
  return { prose, badClosers };
}

/** GitHub's anchor of a heading: its text lower-cased, punctuation dropped, spaces to hyphens; repeats get -1, -2. */
function anchors(prose: { line: string }[]): Set<string> {
  const seen = new Set<string>();
  for (const { line } of prose) {
    const h = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const text = h[1]!.replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/`/g, "");
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
    let slug = base;
    for (let k = 1; seen.has(slug); k++) slug = `${base}-${k}`;
    seen.add(slug);
  }
  return seen;
}

const docs = new Map(
  files.map((f) => {
    const d = scan(readFileSync(join(ROOT, f), "utf8"));
    return [f, { ...d, anchors: anchors(d.prose) }];
  }),
);

describe("docs", () => {
  test("the project's Markdown files are found", () => {
    expect(files).toContain("README.md");
    expect(files).toContain("tests/README.md");
    expect(files.some((f) => f.startsWith("docs/"))).toBe(true);
  });

  test("every fenced code block closes (a fence with text after it does not)", () => {
    const problems = [...docs].flatMap(([f, d]) => d.badClosers.map((p) => `${f}: ${p}`));
    expect(problems).toEqual([]);
  });

  test("every relative link names a file that exists, and a heading that exists in it", () => {
    const problems: string[] = [];
    for (const [f, d] of docs) {
      for (const { n, line } of d.prose) {
        // Code spans hold examples, not links.
        const text = line.replace(/`[^`]*`/g, "");
        for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
          const target = m[1]!;
          if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
          const [path, fragment] = target.split("#", 2) as [string, string | undefined];
          const file = path ? normalize(join(dirname(f), decodeURIComponent(path))) : f;
          if (path && !existsSync(join(ROOT, file))) {
            problems.push(`${f}:${n}: ${target}: no file ${relative(".", file)}`);
            continue;
          }
          const linked = docs.get(file);
          if (fragment && linked && !linked.anchors.has(decodeURIComponent(fragment).toLowerCase()))
            problems.push(`${f}:${n}: ${target}: no heading with that anchor in ${file}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  test("the README's event-stream example is what the API sends: ids count up from 1, every data has `at`", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const start = readme.indexOf("curl -N localhost:8000/tasks/$id/events");
    expect(start).toBeGreaterThan(0);
    const lines = readme.slice(start, readme.indexOf("```", start)).split("\n");
    const events: { id: string; type: string; data: Record<string, unknown> }[] = [];
    for (let i = 0; i < lines.length; i++) {
      const id = /^# id: (.*)$/.exec(lines[i]!);
      if (!id) continue;
      const type = /^# event: (.*)$/.exec(lines[i + 1]!)![1]!;
      const data = JSON.parse(/^# data: (.*)$/.exec(lines[i + 2]!)![1]!) as Record<string, unknown>;
      events.push({ id: id[1]!, type, data });
    }
    expect(events.map((e) => e.type)).toEqual(["status", "status", "progress", "progress", "status"]);
    // lib/tasks/events.ts: numbered per task from 1, the SSE id and the Last-Event-ID taken back.
    for (const e of events) expect(isEventId(e.id), e.id).toBe(true);
    const ids = events.map((e) => Number(e.id));
    expect(ids[0]).toBe(1);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    // Redis's time of the event, as an ISO string (readEvents), on status and progress events alike.
    for (const e of events) expect(new Date(e.data.at as string).toISOString(), JSON.stringify(e.data)).toBe(e.data.at as string);
  });
});
