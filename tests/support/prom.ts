// Reads Prometheus text format (0.0.4) as a scraper does: samples with their labels, for assertions.
// The parser is load.ts's (scripts/load/prom-text.ts); this adds the scrape.
import { parsePromText, sumOf, type Sample } from "../../scripts/load/prom-text.ts";

export type { Sample };
export const parseProm = parsePromText;
/** Sum of the samples named `name` whose labels include `where`. */
export const sum = sumOf;

export async function scrape(url: string, token?: string): Promise<Sample[]> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return parseProm(await res.text());
}
