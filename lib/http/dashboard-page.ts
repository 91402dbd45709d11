// The dashboard's HTML, rendered on the server: the page, and the fragment the page's one small
// script fetches (inside /dashboard/data's JSON) every 2 s and swaps in. No build step, no library:
// plots are inline SVG. Every value from Redis is escaped (task errors and dead-letter reasons carry
// text from agents and messages); the page's Content-Security-Policy allows this script only.
import { latencyText, type Percentile, type Percentiles } from "../ops/minutes.ts";
import type { Overview } from "../ops/overview.ts";

export const esc = (v: unknown) =>
  String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** The page's script: poll, swap the fragment in, and send Retry clicks (with the CSRF header). */
export const SCRIPT = `
const main = document.getElementById("live");
const status = document.getElementById("poll");
async function poll() {
  try {
    const r = await fetch("/dashboard/data", { credentials: "same-origin", headers: { accept: "application/json" } });
    if (r.status === 401) { location.href = "/dashboard/login"; return; }
    const d = await r.json();
    main.innerHTML = d.html;
    status.textContent = "updated " + new Date(d.overview.at).toLocaleTimeString();
  } catch (e) {
    status.textContent = "update failed: " + e.message;
  }
}
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-retry]");
  if (!b) return;
  b.disabled = true;
  const r = await fetch("/dashboard/retry/" + encodeURIComponent(b.dataset.retry), {
    method: "POST", credentials: "same-origin", headers: { "x-dashboard": "1" },
  });
  const d = await r.json().catch(() => ({}));
  b.textContent = r.ok ? "re-queued" : (d.message || "failed");
  poll();
});
setInterval(poll, 2000);
`;

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .2rem} h2{font-size:1rem;margin:1.2rem 0 .4rem}
.cards{display:flex;gap:.8rem;flex-wrap:wrap} .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;min-width:8rem}
.card b{display:block;font-size:1.6rem} table{border-collapse:collapse;background:#fff;width:100%}
td,th{border:1px solid #e3e3e3;padding:.25rem .5rem;text-align:left;vertical-align:top} th{background:#f3f3f3}
.plots{display:flex;gap:1rem;flex-wrap:wrap} svg{background:#fff;border:1px solid #ddd}
.muted{color:#777} .err{color:#b00020} code{font-size:12px}
`;

function page(title: string, body: string, script = ""): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}${script ? `<script>${script}</script>` : ""}</body></html>`;
}

export function loginPage(problem?: string): string {
  return page("agent-prod dashboard: log in", `<h1>agent-prod dashboard</h1>
<form method="post" action="/dashboard/login">
<p><label>Admin token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Log in</button></p>
${problem ? `<p class="err" id="login-error">${esc(problem)}</p>` : ""}
</form>`);
}

export function dashboardPage(o: Overview): string {
  return page("agent-prod dashboard", `<h1>agent-prod dashboard</h1>
<p class="muted"><span id="poll">updated ${esc(o.at)}</span> ·
<form method="post" action="/dashboard/logout" style="display:inline"><button type="submit">Log out</button></form></p>
<main id="live">${fragment(o)}</main>`, SCRIPT);
}

const num = (id: string, label: string, v: number | null, title = "") =>
  `<div class="card" title="${esc(title)}">${esc(label)}<b id="${id}">${v === null ? "?" : esc(v)}</b></div>`;
/** "≤2.5 s", or "> 600 s" for a percentile above the last histogram bucket (lib/ops/minutes.ts). */
const dur = (p: Percentiles, k: Percentile) => esc(latencyText(p, k, { le: "≤", gt: "> " }));

/** A line chart of per-minute series (null: no point), x over the hour, y from 0 to the maximum. */
function chart(title: string, series: { name: string; color: string; values: (number | null)[] }[], unit: (v: number) => string): string {
  const W = 420, H = 150, L = 48, B = 20, T = 18;
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const max = Math.max(1, ...all);
  const n = Math.max(1, (series[0]?.values.length ?? 1) - 1);
  const x = (i: number) => L + ((W - L - 8) * i) / n;
  const y = (v: number) => T + (H - T - B) * (1 - v / max);
  const lines = series.map((s) => {
    const pts = s.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    return pts.length ? `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts.join(" ")}"/>` : "";
  });
  const legend = series.map((s, i) => `<text x="${L + i * 90}" y="12" fill="${s.color}" font-size="11">${esc(s.name)}</text>`).join("");
  return `<svg width="${W}" height="${H}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${legend}
<line x1="${L}" y1="${H - B}" x2="${W - 8}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>
<text x="4" y="${T + 8}" font-size="10">${esc(unit(max))}</text><text x="4" y="${H - B}" font-size="10">0</text>
<text x="${L}" y="${H - 5}" font-size="10">-60 min</text><text x="${W - 40}" y="${H - 5}" font-size="10">now</text>${lines.join("")}</svg>`;
}

export function fragment(o: Overview): string {
  const c = o.counts;
  const m = o.hour.minutes;
  const e2e = o.hour.e2e;
  return `<div class="cards">
${num("n-running", "running", c.running, "tasks in flight on live workers")}
${num("n-backlog", "backlog", c.backlog, o.backlog_error ? `broker did not answer: ${o.backlog_error}` : "messages no worker has received yet")}
${num("n-done", "done (1 h)", c.done_last_hour)}
${num("n-failed", "failed (1 h)", c.failed_last_hour)}
${num("n-retried", "retried (1 h)", c.retried_last_hour, "attempts that failed and will run again")}
${num("n-workers", "live workers", o.workers.length)}
</div>
<p class="muted">end to end over the hour: p50 ${dur(e2e, "p50")}, p95 ${dur(e2e, "p95")}, p99 ${dur(e2e, "p99")} (histogram bucket bounds)</p>
<div class="plots">
${chart("tasks finished per minute", [
    { name: "done", color: "#2a7", values: m.map((p) => p.done) },
    { name: "failed", color: "#c33", values: m.map((p) => p.failed) },
  ], (v) => `${v}/min`)}
${chart("end-to-end latency per minute", [
    { name: "p50", color: "#36c", values: m.map((p) => p.p50) },
    { name: "p95", color: "#e80", values: m.map((p) => p.p95) },
    { name: "p99", color: "#c33", values: m.map((p) => p.p99) },
  ], (v) => (v >= 1000 ? `${v / 1000} s` : `${v} ms`))}
</div>
<h2>Live workers</h2>
${o.workers.length ? `<table id="workers"><tr><th>worker</th><th>in flight</th><th>finished</th><th>up since</th><th>last heartbeat</th></tr>
${o.workers.map((w) => `<tr><td><code>${esc(w.id)}</code></td><td>${esc(w.in_flight)} / ${esc(w.capacity)}</td><td>${esc(w.finished)}</td><td>${esc(w.started)}</td><td>${esc(w.heartbeat)}</td></tr>`).join("")}</table>`
    : `<p class="muted">no worker has announced itself in the last 10 s</p>`}
<h2>Recent failures</h2>
${o.failures.length ? `<table id="failures"><tr><th>task</th><th>now</th><th>attempts</th><th>error</th><th></th></tr>
${o.failures.map((f) => `<tr data-task="${esc(f.task_id)}"><td><code>${esc(f.task_id)}</code></td><td class="status">${esc(f.status)}</td><td>${esc(f.attempts)}</td><td>${esc((f.error ?? "").slice(0, 300))}</td>
<td>${f.status === "failed" ? `<button data-retry="${esc(f.task_id)}">Retry</button>` : ""}</td></tr>`).join("")}</table>`
    : `<p class="muted">none in the last 2 h</p>`}
<h2>Dead letters</h2>
${o.dead_letters.length ? `<table id="dead-letters"><tr><th>at</th><th>task</th><th>now</th><th>reason</th><th></th></tr>
${o.dead_letters.map((d) => `<tr><td>${esc(d.at)}</td><td><code>${esc(d.task_id ?? "-")}</code></td><td>${esc(d.status ?? "-")}</td><td>${esc(d.reason.slice(0, 300))}</td>
<td>${d.task_id && d.status === "failed" ? `<button data-retry="${esc(d.task_id)}">Retry</button>` : ""}</td></tr>`).join("")}</table>`
    : `<p class="muted">none</p>`}`;
}
