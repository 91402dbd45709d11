// RocketMQ's remoting protocol (what mqadmin speaks to name servers and brokers), enough for admin calls.
//
// Frame:  int32 BE length of the rest (4 + H + B) | int32 BE (serializeType << 24) | H | header | body
// Header: UTF-8 JSON {code, language, version, opaque, flag, remark?, extFields: {string: string}}
// flag bit 0 = response, bit 1 = oneway; a response echoes its request's opaque.
// See org.apache.rocketmq.remoting.protocol.RemotingCommand (encode/decode) in apache/rocketmq.
import net from "node:net";
import { createHmac } from "node:crypto";
import { REMOTING_VERSION, requestCodeName, responseCodeName } from "./codes.ts";

export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
const SERIALIZE_JSON = 0;
const FLAG_RESPONSE = 1;
const FLAG_ONEWAY = 2;

export interface RemotingCommand {
  code: number;
  opaque: number;
  flag: number;
  version?: number;
  language?: string;
  remark?: string | null;
  extFields?: Record<string, string>;
  body?: Uint8Array;
}

export const isResponse = (c: RemotingCommand) => (c.flag & FLAG_RESPONSE) !== 0;

export type RemotingErrorKind = "response" | "timeout" | "connect" | "closed" | "protocol";

/** A failed remoting call. `code` is the server's response code (kind "response") or -1 for local failures. */
export class RemotingError extends Error {
  constructor(
    readonly kind: RemotingErrorKind,
    readonly code: number,
    readonly remark: string,
    readonly addr: string,
    readonly requestCode?: number,
    options?: { cause?: unknown },
  ) {
    const what = requestCode === undefined ? "" : ` ${requestCodeName(requestCode)}`;
    const detail = kind === "response" ? `${responseCodeName(code)}: ${remark || "(no remark)"}` : `${kind}: ${remark}`;
    super(`RocketMQ ${addr}${what} failed, ${detail}`, options);
    this.name = "RemotingError";
  }
}

// ---------------------------------------------------------------------------------------------- codec

export function encodeFrame(cmd: RemotingCommand): Buffer {
  const header: Record<string, unknown> = {
    code: cmd.code,
    language: cmd.language ?? "JAVA",
    version: cmd.version ?? REMOTING_VERSION,
    opaque: cmd.opaque,
    flag: cmd.flag,
    extFields: cmd.extFields ?? {},
  };
  if (cmd.remark != null) header.remark = cmd.remark;
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const b = cmd.body ?? new Uint8Array(0);
  const total = 4 + h.length + b.length;
  if (total + 4 > MAX_FRAME_BYTES) throw new RangeError(`frame of ${total + 4} bytes exceeds ${MAX_FRAME_BYTES}`);
  const out = Buffer.allocUnsafe(4 + total);
  out.writeInt32BE(total, 0);
  out.writeInt32BE(((SERIALIZE_JSON << 24) | h.length) >>> 0, 4);
  h.copy(out, 8);
  out.set(b, 8 + h.length);
  return out;
}

/** Incremental decoder: feed it chunks as they arrive; it returns every complete frame. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  push(chunk: Uint8Array): RemotingCommand[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: RemotingCommand[] = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const rest = this.buf.readInt32BE(0);
      if (rest < 4 || rest + 4 > this.maxFrameBytes)
        throw new RangeError(`bad frame length ${rest} (limit ${this.maxFrameBytes} bytes)`);
      if (this.buf.length < 4 + rest) break;
      const frame = this.buf.subarray(4, 4 + rest);
      this.buf = this.buf.subarray(4 + rest);
      out.push(decodeFrameBody(frame));
    }
    if (this.buf.length === 0) this.buf = Buffer.alloc(0); // drop the reference to the last big chunk
    return out;
  }

  get buffered(): number {
    return this.buf.length;
  }
}

/** Decodes what follows the length field: the header-length word, header and body. */
function decodeFrameBody(frame: Buffer): RemotingCommand {
  const word = frame.readUInt32BE(0);
  const serializeType = (word >>> 24) & 0xff;
  const h = word & 0xffffff;
  if (serializeType !== SERIALIZE_JSON) throw new RangeError(`unsupported serialize type ${serializeType}`);
  if (4 + h > frame.length) throw new RangeError(`header length ${h} exceeds frame of ${frame.length} bytes`);
  const header = JSON.parse(frame.toString("utf8", 4, 4 + h)) as RemotingCommand;
  const body = frame.subarray(4 + h);
  const cmd: RemotingCommand = {
    code: Number(header.code),
    opaque: Number(header.opaque),
    flag: Number(header.flag ?? 0),
    version: header.version,
    language: header.language,
    remark: header.remark ?? null,
    extFields: header.extFields ?? {},
  };
  if (body.length) cmd.body = new Uint8Array(body);
  return cmd;
}

/**
 * Parses the JSON dialect fastjson writes by default: map keys that are numbers are not quoted,
 * e.g. the name server's cluster info `{"brokerAddrs":{0:"127.0.0.1:10911"}}`. Bare numeric keys outside
 * strings are quoted, then the text goes to JSON.parse. Big numbers lose precision as in JSON.parse.
 */
export function parseLooseJson(text: string): unknown {
  let out = "";
  let i = 0;
  let inString = false;
  let expectKey = false; // just after '{' or ',' inside an object
  const stack: string[] = [];
  while (i < text.length) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === "\\") {
        out += text[i + 1] ?? "";
        i += 2;
        continue;
      }
      if (c === '"') inString = false;
      i++;
      continue;
    }
    if (c === '"') {
      inString = true;
      expectKey = false;
      out += c;
      i++;
      continue;
    }
    if (c === "{" || c === "[") {
      stack.push(c);
      expectKey = c === "{";
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack[stack.length - 1] === "{";
    } else if (expectKey && /[-0-9]/.test(c)) {
      const m = /^-?\d+(\.\d+)?/.exec(text.slice(i));
      if (m) {
        out += `"${m[0]}"`;
        i += m[0].length;
        expectKey = false;
        continue;
      }
    } else if (!/\s/.test(c)) {
      expectKey = false;
    }
    out += c;
    i++;
  }
  return JSON.parse(out);
}

// ------------------------------------------------------------------------------------------------ ACL

export interface Credentials {
  accessKey: string;
  accessSecret: string;
}

/**
 * Adds AccessKey and Signature to a request's extFields the way RocketMQ's AclClientRPCHook does:
 * HmacSHA1 keyed with the secret over (the extFields values, AccessKey included, concatenated in key order,
 * UTF-8) followed by the body bytes; base64. Keys sort like Java's TreeMap<String> (UTF-16 code units,
 * which is also how JS compares strings).
 */
export function signRequest(
  extFields: Record<string, string>,
  body: Uint8Array | undefined,
  cred: Credentials,
): Record<string, string> {
  const fields: Record<string, string> = { ...extFields, AccessKey: cred.accessKey };
  delete fields.Signature;
  const keys = Object.keys(fields).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const hmac = createHmac("sha1", cred.accessSecret);
  hmac.update(Buffer.from(keys.map((k) => fields[k]).join(""), "utf8"));
  if (body?.length) hmac.update(body);
  fields.Signature = hmac.digest("base64");
  return fields;
}

// --------------------------------------------------------------------------------------------- client

export interface RemotingClientOptions {
  timeoutMs?: number;
  credentials?: Credentials;
}

export interface RequestOptions {
  body?: Uint8Array;
  timeoutMs?: number;
  /** Response codes that resolve instead of throwing; default [0] (SUCCESS). */
  accept?: number[];
}

interface Pending {
  resolve: (c: RemotingCommand) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  requestCode: number;
}

/** One TCP connection to one name server or broker; connects lazily and again after a failure. */
export class RemotingClient {
  private socket?: net.Socket;
  private connecting?: Promise<net.Socket>;
  private readonly pending = new Map<number, Pending>();
  private nextOpaque = 1;
  private closed = false;
  readonly timeoutMs: number;

  constructor(
    readonly addr: string,
    private readonly opts: RemotingClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
  }

  async request(code: number, extFields: Record<string, string> = {}, o: RequestOptions = {}): Promise<RemotingCommand> {
    if (this.closed) throw new RemotingError("closed", -1, "client closed", this.addr, code);
    const timeoutMs = o.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const socket = await this.connect(timeoutMs, code);
    const opaque = this.nextOpaque;
    this.nextOpaque = this.nextOpaque >= 0x7fffffff ? 1 : this.nextOpaque + 1;
    const fields = this.opts.credentials ? signRequest(extFields, o.body, this.opts.credentials) : extFields;
    const frame = encodeFrame({ code, opaque, flag: 0, extFields: fields, body: o.body });
    const response = await new Promise<RemotingCommand>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(opaque);
          reject(new RemotingError("timeout", -1, `no response within ${timeoutMs} ms`, this.addr, code));
        },
        Math.max(1, deadline - Date.now()),
      );
      this.pending.set(opaque, { resolve, reject, timer, requestCode: code });
      socket.write(frame);
    });
    const accept = o.accept ?? [0];
    if (!accept.includes(response.code))
      throw new RemotingError("response", response.code, response.remark ?? "", this.addr, code);
    return response;
  }

  close(): void {
    this.closed = true;
    this.fail(new RemotingError("closed", -1, "client closed", this.addr));
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(timeoutMs: number, code: number): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    const [host, portText] = splitAddr(this.addr);
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ host, port: Number(portText) });
      const decoder = new FrameDecoder();
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RemotingError("connect", -1, `connect timed out after ${timeoutMs} ms`, this.addr, code));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        this.socket = s;
        resolve(s);
      });
      s.on("data", (chunk: Buffer) => {
        let cmds: RemotingCommand[];
        try {
          cmds = decoder.push(chunk);
        } catch (e) {
          this.fail(new RemotingError("protocol", -1, (e as Error).message, this.addr, undefined, { cause: e }));
          s.destroy();
          return;
        }
        for (const c of cmds) {
          if (!isResponse(c)) continue; // requests from the server (none expected for admin calls)
          const p = this.pending.get(c.opaque);
          if (!p) continue; // answer to a request that already timed out
          this.pending.delete(c.opaque);
          clearTimeout(p.timer);
          p.resolve(c);
        }
      });
      s.on("error", (e: Error) => {
        clearTimeout(timer);
        const err = new RemotingError("connect", -1, e.message, this.addr, code, { cause: e });
        reject(err);
        this.fail(err);
      });
      s.on("close", () => {
        clearTimeout(timer);
        if (this.socket === s) this.socket = undefined;
        reject(new RemotingError("closed", -1, "connection closed", this.addr, code));
        this.fail(new RemotingError("closed", -1, "connection closed", this.addr));
      });
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Fails every pending request (a connection error ends them all). */
  private fail(err: RemotingError): void {
    for (const [opaque, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(opaque);
      p.reject(new RemotingError(err.kind, err.code, err.remark, err.addr, p.requestCode, { cause: err }));
    }
  }
}

export function splitAddr(addr: string): [string, string] {
  const i = addr.lastIndexOf(":");
  if (i <= 0) throw new RangeError(`address "${addr}" is not host:port`);
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), addr.slice(i + 1)];
}

export { FLAG_ONEWAY, FLAG_RESPONSE };
