// One HTTP request written byte for byte over TCP, for what fetch never sends: no Host header, a
// malformed one, HTTP/1.0, a path with `..` in it. The request should ask the server to close
// (`Connection: close`, or HTTP/1.0): the answer is what arrived when the connection closed.
import { connect } from "node:net";

export interface RawAnswer {
  status: number;
  /** the header lines, lowercased */
  headers: string;
  /** the body, chunked framing removed */
  body: string;
}

export function rawRequest(port: number, request: string, timeoutMs = 10_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.write(request));
    let got = "";
    s.on("data", (d) => (got += d.toString()));
    s.on("close", () => {
      const i = got.indexOf("\r\n\r\n");
      const headers = (i < 0 ? got : got.slice(0, i)).toLowerCase();
      let body = i < 0 ? "" : got.slice(i + 4);
      if (headers.includes("transfer-encoding: chunked")) body = body.replace(/(^|\r\n)[0-9a-f]+\r\n/gi, "").replace(/\r\n$/, "");
      resolve({ status: Number(got.slice(9, 12)), headers, body });
    });
    s.on("error", reject);
    setTimeout(() => s.destroy(), timeoutMs);
  });
}
