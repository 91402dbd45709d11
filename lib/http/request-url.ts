// A request's path and query, read from `request.url` without `new URL()`. Bun builds request.url
// from the Host header, and when that is missing (HTTP/1.0) or malformed (`Host: a b`, `x:99999`,
// `[::1`) it hands over the path alone (`/healthz`) or an absolute URL that does not parse: `new URL`
// throws there, and a throw in the error handler reached the client as Bun's HTML error page. These
// take both forms and never throw. The only place the API reads a request's URL.

/** The first index at or after `from` of one of `chars`, else the length. */
function firstOf(url: string, chars: string, from: number): number {
  for (let i = from; i < url.length; i++) if (chars.includes(url[i]!)) return i;
  return url.length;
}

/** [start of the path, start of `?query`, start of `#fragment`]: a bare path starts at 0, else after `scheme://authority`. */
function parts(url: string): [number, number, number] {
  const scheme = url.startsWith("/") ? -1 : url.indexOf("://");
  const path = scheme < 0 ? 0 : firstOf(url, "/?#", scheme + 3);
  const query = firstOf(url, "?#", path);
  return [path, query, firstOf(url, "#", query)];
}

/** The request's path (`/tasks/abc`) as request.url holds it; "/" when it has none. */
export function pathOf(url: string): string {
  const [p, q] = parts(url);
  return p === q ? "/" : url.slice(p, q);
}

/** The request's query parameters: what `new URL(url).searchParams` gives, for any request.url. */
export function queryOf(url: string): URLSearchParams {
  const [, q, h] = parts(url);
  return new URLSearchParams(url[q] === "?" ? url.slice(q + 1, h) : "");
}
