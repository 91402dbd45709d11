// Coalescing of sends: the messages of one topic asked for in one turn of the event loop travel as one
// batch request (lib/mq/remoting-batch.ts). Each gRPC send costs the caller an http2 stream open, write
// and flush, and the proxy a request: per message, that was most of the API's CPU and a large part of
// the worker's and the JVM's (docs/performance.md).
//
// A batch is stored atomically and answered as a whole: there is no per-message verdict. To keep "each
// caller is answered for its own message, and fails alone", a batch that fails for any reason is sent
// again one message per request through the gRPC producer, which answers each message on its own: a
// message the broker refused (too large, bad properties) fails alone, the others are accepted. A batch
// that failed for a reason that is not its messages' (the broker unreachable over remoting, a timeout)
// also pauses batching for a while, so that sends do not pay a failing batch attempt each time.
import { ResponseCode } from "../rocketmq/codes.ts";
import { RemotingError } from "../rocketmq/remoting.ts";

export interface BatchableMessage {
  topic: string;
  body: Buffer;
}

interface Pending<M> {
  m: M;
  resolve(id: string): void;
  reject(e: unknown): void;
}

/** A batch this large in bodies is sent at once; the broker's limit for a whole batch is 4 MiB by default. */
export const MAX_BATCH_BYTES = 1 << 20;

/** An error one message of a batch can cause alone (no reason to stop batching). */
export function isPerMessageRefusal(e: unknown): boolean {
  return (
    (e instanceof RemotingError && e.kind === "response" && e.code === ResponseCode.MESSAGE_ILLEGAL) ||
    // Our encoder (UnbatchableMessageError) or the client's own checks.
    e instanceof TypeError
  );
}

/** How long batching stays off after a batch failed for a reason other than its messages. */
export const BATCH_PAUSE_MS = 10_000;

export interface SendCounters {
  /** SendMessageRequests made */
  requests: number;
  /** messages accepted */
  messages: number;
  /** batches that failed as a whole and were re-sent one message per request */
  splits: number;
}

export class SendBatcher<M extends BatchableMessage> {
  readonly counters: SendCounters = { requests: 0, messages: 0, splits: 0 };
  #pending = new Map<string, { list: Pending<M>[]; bytes: number }>();
  #scheduled = false;
  #pausedUntil = 0;

  constructor(
    private readonly sendOne: (m: M) => Promise<string>,
    private readonly sendMany: (ms: M[]) => Promise<string[]>,
    /** most messages per request; 1 turns batching off */
    private readonly max: number,
    private readonly maxBytes = MAX_BATCH_BYTES,
    /** told when batching pauses after a failure that was not the messages' */
    private readonly onPause: (e: unknown) => void = () => {},
  ) {}

  /** Resolves with the message's id once the broker accepted it; rejects if it was refused. */
  send(m: M): Promise<string> {
    if (this.max <= 1 || m.body.length >= this.maxBytes || performance.now() < this.#pausedUntil) return this.#single(m);
    return new Promise<string>((resolve, reject) => {
      let batch = this.#pending.get(m.topic);
      if (batch && batch.bytes + m.body.length > this.maxBytes) {
        this.#pending.delete(m.topic);
        void this.#dispatch(batch.list);
        batch = undefined;
      }
      if (!batch) this.#pending.set(m.topic, (batch = { list: [], bytes: 0 }));
      batch.list.push({ m, resolve, reject });
      batch.bytes += m.body.length;
      if (batch.list.length >= this.max) {
        this.#pending.delete(m.topic);
        void this.#dispatch(batch.list);
      } else if (!this.#scheduled) {
        this.#scheduled = true;
        // One turn of the event loop: the sends started by the I/O of this turn (HTTP requests, Redis
        // replies, received messages) join; a lone send waits well under a millisecond.
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush() {
    this.#scheduled = false;
    const batches = [...this.#pending.values()];
    this.#pending.clear();
    for (const b of batches) void this.#dispatch(b.list);
  }

  async #single(m: M): Promise<string> {
    this.counters.requests++;
    const id = await this.sendOne(m);
    this.counters.messages++;
    return id;
  }

  async #dispatch(list: Pending<M>[]): Promise<void> {
    if (list.length === 1) {
      const [one] = list as [Pending<M>];
      return this.#single(one.m).then(one.resolve, one.reject);
    }
    let ids: string[];
    try {
      this.counters.requests++;
      ids = await this.sendMany(list.map((p) => p.m));
    } catch (e) {
      if (!isPerMessageRefusal(e) && performance.now() >= this.#pausedUntil) {
        this.#pausedUntil = performance.now() + BATCH_PAUSE_MS;
        this.onPause(e);
      }
      this.counters.splits++;
      await Promise.all(list.map((p) => this.#single(p.m).then(p.resolve, p.reject)));
      return;
    }
    this.counters.messages += list.length;
    list.forEach((p, i) => p.resolve(ids[i]!));
  }
}
