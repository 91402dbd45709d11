// Unit tests of the remoting codec, the loose JSON parser, ACL signing and the client's request matching
// (against an in-process fake server; no RocketMQ needed).
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import {
  FrameDecoder,
  MAX_FRAME_BYTES,
  type RemotingCommand,
  RemotingClient,
  RemotingError,
  encodeFrame,
  parseLooseJson,
  signRequest,
} from "../lib/rocketmq/remoting.ts";

const cmd = (o: Partial<RemotingCommand> = {}): RemotingCommand => ({
  code: 17,
  opaque: 7,
  flag: 0,
  extFields: { topic: "TopicTest", readQueueNums: "16" },
  ...o,
});

describe("frame codec", () => {
  test("layout: length, serialize type + header length, JSON header, body", () => {
    const body = new Uint8Array([1, 2, 3]);
    const f = encodeFrame(cmd({ body }));
    const h = f.readInt32BE(4) & 0xffffff;
    expect(f.readInt32BE(0)).toBe(f.length - 4);
    expect(f[4]).toBe(0); // JSON
    const header = JSON.parse(f.toString("utf8", 8, 8 + h));
    expect(header).toEqual({
      code: 17,
      language: "JAVA",
      version: 479,
      opaque: 7,
      flag: 0,
      extFields: { topic: "TopicTest", readQueueNums: "16" },
    });
    expect([...f.subarray(8 + h)]).toEqual([1, 2, 3]);
  });

  test("round trip with and without body, remark and non-ASCII text", () => {
    const d = new FrameDecoder();
    const a = cmd({ remark: "été ✓", body: new TextEncoder().encode('{"a":1}') });
    const b = cmd({ opaque: 8, flag: 1, extFields: {} });
    const [ra, rb] = d.push(Buffer.concat([encodeFrame(a), encodeFrame(b)]));
    expect(ra).toMatchObject({ code: 17, opaque: 7, flag: 0, remark: "été ✓", extFields: a.extFields });
    expect(new TextDecoder().decode(ra!.body)).toBe('{"a":1}');
    expect(rb).toMatchObject({ opaque: 8, flag: 1, extFields: {} });
    expect(rb!.body).toBeUndefined();
  });

  test("a frame split byte by byte decodes once, when its last byte arrives", () => {
    const f = encodeFrame(cmd({ body: new Uint8Array(300).fill(9) }));
    const d = new FrameDecoder();
    for (let i = 0; i < f.length - 1; i++) expect(d.push(f.subarray(i, i + 1))).toEqual([]);
    const out = d.push(f.subarray(f.length - 1));
    expect(out).toHaveLength(1);
    expect(out[0]!.body).toHaveLength(300);
    expect(d.buffered).toBe(0);
  });

  test("several frames in one chunk, and a chunk ending inside the next frame", () => {
    const frames = [1, 2, 3, 4].map((o) => encodeFrame(cmd({ opaque: o })));
    const all = Buffer.concat(frames);
    const d = new FrameDecoder();
    const cut = frames[0]!.length + frames[1]!.length + 5;
    expect(d.push(all.subarray(0, cut)).map((c) => c.opaque)).toEqual([1, 2]);
    expect(d.push(all.subarray(cut)).map((c) => c.opaque)).toEqual([3, 4]);
  });

  test("an oversize frame is rejected from its length field alone", () => {
    const d = new FrameDecoder();
    const len = Buffer.alloc(4);
    len.writeInt32BE(MAX_FRAME_BYTES); // + 4 bytes of length field > 16 MiB
    expect(() => d.push(len)).toThrow(/bad frame length/);
    expect(() => encodeFrame(cmd({ body: new Uint8Array(MAX_FRAME_BYTES) }))).toThrow(RangeError);
    const small = new FrameDecoder(64);
    expect(() => small.push(encodeFrame(cmd({ body: new Uint8Array(100) })))).toThrow(/limit 64/);
  });

  test("garbage (an HTTP answer) is a protocol error, not a hang", () => {
    expect(() => new FrameDecoder().push(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n"))).toThrow(/bad frame length/);
  });
});

describe("parseLooseJson", () => {
  test("the name server's cluster info body (unquoted numeric map keys), as sent by 5.3.3", () => {
    // Captured from GET_BROKER_CLUSTER_INFO on the real name server.
    const body =
      '{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a",' +
      '"cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}';
    expect(() => JSON.parse(body)).toThrow();
    expect(parseLooseJson(body)).toEqual({
      brokerAddrTable: {
        "broker-a": {
          brokerAddrs: { "0": "127.0.0.1:10911", "1": "127.0.0.1:10921" },
          brokerName: "broker-a",
          cluster: "DefaultCluster",
          enableActingMaster: false,
        },
      },
      clusterAddrTable: { DefaultCluster: ["broker-a"] },
    });
  });

  test("leaves numbers in arrays, values and strings alone; handles escapes and negative keys", () => {
    const t = '{ -1 : [1, 2, {3:4}], "s":"{5:6}, \\"{7:8}", "n": 10, 11:{ 12 :"x"}}';
    expect(parseLooseJson(t)).toEqual({ "-1": [1, 2, { "3": 4 }], s: '{5:6}, "{7:8}', n: 10, "11": { "12": "x" } });
  });

  test("strict JSON passes through unchanged", () => {
    const v = { a: [1, { b: "c:1" }], d: null, e: true, f: -2.5 };
    expect(parseLooseJson(JSON.stringify(v))).toEqual(v);
  });
});

describe("ACL signature", () => {
  // Vectors computed with RocketMQ 5.3.3's own AclClientRPCHook (rocketmq-client-5.3.3.jar):
  // new AclClientRPCHook(new SessionCredentials("agentAK", "agentSecret-42")).doBeforeRequest(addr, request)
  const cred = { accessKey: "agentAK", accessSecret: "agentSecret-42" };

  test("header fields only", () => {
    const f = signRequest(
      { topic: "TopicTest", readQueueNums: "16", writeQueueNums: "16", perm: "6", attributes: "+message.type=NORMAL" },
      undefined,
      cred,
    );
    expect(f.AccessKey).toBe("agentAK");
    expect(f.Signature).toBe("16whHWRiz0B8x/WfILLH1hSbWJM=");
  });

  test("header fields (mixed-case keys, non-ASCII value) and a body", () => {
    const body = new TextEncoder().encode('{"groupName":"GID_AGENT_WORKER","retryMaxTimes":16}');
    expect(signRequest({ zeta: "été", Alpha: "A" }, body, cred).Signature).toBe("Bgdr4WZqi1MN9CO5HQB23HUUYf8=");
  });

  test("no fields but AccessKey; an old Signature is replaced, not signed", () => {
    expect(signRequest({}, undefined, cred).Signature).toBe("XET/KEEFc1MYGnZAjVFCPj19GgI=");
    expect(signRequest({ Signature: "stale" }, undefined, cred).Signature).toBe("XET/KEEFc1MYGnZAjVFCPj19GgI=");
  });

  test("the client signs every request it sends and the secret never appears on the wire", async () => {
    const seen: RemotingCommand[] = [];
    const srv = await fakeServer((c, reply) => {
      seen.push(c);
      reply({ code: 0, opaque: c.opaque, flag: 1 });
    });
    const client = new RemotingClient(srv.addr, { credentials: cred });
    await client.request(17, { topic: "TopicTest", readQueueNums: "16", writeQueueNums: "16", perm: "6", attributes: "+message.type=NORMAL" });
    client.close();
    expect(seen[0]!.extFields).toMatchObject({ AccessKey: "agentAK", Signature: "16whHWRiz0B8x/WfILLH1hSbWJM=" });
    expect(JSON.stringify(seen)).not.toContain("agentSecret-42");
  });
});

// ------------------------------------------------------------------------------------ client behaviour

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A fake remoting server; `onRequest` decides how (and whether) to answer. */
async function fakeServer(onRequest: (c: RemotingCommand, reply: (r: RemotingCommand) => void, sock: net.Socket) => void) {
  const srv = net.createServer((sock) => {
    const d = new FrameDecoder();
    sock.on("data", (chunk: Buffer) => {
      for (const c of d.push(chunk)) onRequest(c, (r) => sock.write(encodeFrame(r)), sock);
    });
    sock.on("error", () => {});
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { addr: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, srv };
}

describe("RemotingClient", () => {
  test("matches responses to requests by opaque, in any order", async () => {
    const held: [RemotingCommand, (r: RemotingCommand) => void][] = [];
    const srv = await fakeServer((c, reply) => {
      held.push([c, reply]);
      if (held.length === 3)
        for (const [req, rep] of held.reverse())
          rep({ code: 0, opaque: req.opaque, flag: 1, extFields: { echo: req.extFields!.n! } });
    });
    const client = new RemotingClient(srv.addr);
    const rs = await Promise.all(["a", "b", "c"].map((n) => client.request(30, { n })));
    expect(rs.map((r) => r.extFields!.echo)).toEqual(["a", "b", "c"]);
    client.close();
  });

  test("a non-success code throws RemotingError with code, remark and address, unless accepted", async () => {
    const srv = await fakeServer((c, reply) => reply({ code: 17, opaque: c.opaque, flag: 1, remark: "No topic in this broker" }));
    const client = new RemotingClient(srv.addr);
    const e = await client.request(351, { topic: "x" }).catch((x) => x);
    expect(e).toBeInstanceOf(RemotingError);
    expect(e).toMatchObject({ kind: "response", code: 17, remark: "No topic in this broker", addr: srv.addr, requestCode: 351 });
    expect(e.message).toContain("TOPIC_NOT_EXIST(17): No topic in this broker");
    expect((await client.request(351, { topic: "x" }, { accept: [0, 17] })).code).toBe(17);
    client.close();
  });

  test("a request without answer times out; a late answer is ignored", async () => {
    let firstSent!: () => void;
    const lateSent = new Promise<void>((r) => (firstSent = r));
    const srv = await fakeServer((c, reply) => setTimeout(() => (reply({ code: 0, opaque: c.opaque, flag: 1 }), firstSent()), 300));
    const client = new RemotingClient(srv.addr, { timeoutMs: 5000 });
    const e = await client.request(14, {}, { timeoutMs: 50 }).catch((x) => x);
    expect(e).toMatchObject({ kind: "timeout", code: -1 });
    await lateSent; // the late answer is on the wire, ahead of the next request's answer
    expect((await client.request(14)).code).toBe(0); // ignored, and the connection is still usable
    client.close();
  });

  test("a dropped connection fails every pending request, and the next request reconnects", async () => {
    let drop = true;
    const srv = await fakeServer((c, reply, sock) => {
      if (drop) {
        drop = false;
        setTimeout(() => sock.destroy(), 20);
      } else if (c.code === 2) reply({ code: 0, opaque: c.opaque, flag: 1 });
    });
    const client = new RemotingClient(srv.addr, { timeoutMs: 5000 });
    const errs = await Promise.all([client.request(1), client.request(1)].map((p) => p.catch((x) => x)));
    for (const e of errs) expect(e).toMatchObject({ kind: "closed" });
    expect((await client.request(2)).code).toBe(0);
    client.close();
  });

  test("connection refused is a connect error naming the address", async () => {
    const client = new RemotingClient("127.0.0.1:1", { timeoutMs: 1000 });
    const e = await client.request(106).catch((x) => x);
    expect(e).toMatchObject({ kind: "connect", addr: "127.0.0.1:1" });
    expect(e.message).toContain("127.0.0.1:1");
    client.close();
  });
});
