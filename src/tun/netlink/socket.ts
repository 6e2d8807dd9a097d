/**
 * A netlink socket with asynchronous request/response: requests get sequence numbers,
 * replies are matched to their pending request by seq (any number may be in flight, replies
 * may interleave), multi-part dumps are collected until NLMSG_DONE, and each request has its
 * own timeout that rejects only that request.
 *
 * Nothing here blocks the event loop: readiness comes from a uv_poll watcher, receives are
 * non-blocking, and sends run on a libuv pool thread (the kernel executes an rtnetlink
 * request inside sendmsg, under rtnl_lock, so a send can wait as long as another process
 * holds that lock). Sends on one socket stay in call order.
 *
 * Synchronous variants (`requestSync`) exist for start-up code that cannot await; they block
 * the calling thread by design and dispatch any other replies they read on the way.
 */
import { native, type NativeFdWatch } from '../native.js';
import { OsError, wrapOsError } from '../errors.js';
import {
  NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST,
  encodeMessage, parseError, parseMessages, readI32, type NlMessage, type ParseError,
} from './message.js';

const EBADF = 9, ETIMEDOUT = 110, EPROTO = 71, ENOBUFS = 105, EMSGSIZE = 90;

/** The syscalls a NlSocket needs; the native one talks to the kernel, tests substitute a fake. */
export interface NlTransport {
  /** Send one datagram without blocking the caller; `done(errno)` (0: sent) later. */
  send(buf: Buffer, done: (errno: number) => void): void;
  /** Send one datagram now (blocking). Throws on error. */
  sendSync(buf: Buffer): void;
  /** Receive one queued datagram into `buf` without blocking: its full length, or -1 when none. Throws on error. */
  recv(buf: Buffer): number;
  /** Receive one datagram, waiting up to `timeoutMs`: its length, or -1 on timeout. Throws on error. */
  recvWait(buf: Buffer, timeoutMs: number): number;
  /** Start calling `onReadable` while datagrams are queued; `stopWatch()` ends it. */
  watch(onReadable: () => void): void;
  stopWatch(): void;
  /** Release the socket. */
  close(): void;
}

/** NlTransport over the addon's raw netlink socket. */
export class NativeNlTransport implements NlTransport {
  private watcher: NativeFdWatch | null = null;
  private watching = false;
  private constructor(private fd: number) {}

  /** Open a netlink socket of `protocol` (0: NETLINK_ROUTE), subscribed to the multicast `groups` bitmask (RTMGRP_*). */
  static open(protocol = 0, groups = 0): NativeNlTransport {
    return new NativeNlTransport(groups ? native().nlOpen(protocol, groups) : native().nlOpen(protocol));
  }
  send(buf: Buffer, done: (errno: number) => void): void {
    if (this.fd < 0) { done(EBADF); return; }
    native().nlSendAsync(this.fd, buf, buf.length, (errno) => done(errno));
  }
  sendSync(buf: Buffer): void {
    if (this.fd < 0) throw new OsError(EBADF, 'netlink send', 'socket closed');
    native().nlSend(this.fd, buf, buf.length);
  }
  recv(buf: Buffer): number {
    return this.fd < 0 ? -1 : native().nlRecvNow(this.fd, buf);
  }
  recvWait(buf: Buffer, timeoutMs: number): number {
    if (this.fd < 0) throw new OsError(EBADF, 'netlink recv', 'socket closed');
    try {
      return native().nlRecv(this.fd, buf, Math.max(0, Math.ceil(timeoutMs)));
    } catch (e) {
      if ((e as { code?: string }).code === 'ETIMEDOUT') return -1;
      throw e;
    }
  }
  watch(onReadable: () => void): void {
    if (this.fd < 0 || this.watching) return;
    if (!this.watcher) this.watcher = new (native().FdWatch)(this.fd);
    this.watcher.start(() => onReadable());
    this.watching = true;
  }
  stopWatch(): void {
    if (this.watching) { this.watcher?.stop(); this.watching = false; }
  }
  close(): void {
    this.watcher?.close();
    this.watcher = null;
    this.watching = false;
    if (this.fd >= 0) { native().closeFd(this.fd); this.fd = -1; }
  }
}

/** How a request completes. */
export interface RequestOptions {
  /** Operation name used in errors, e.g. 'RTM_NEWROUTE 198.19.1.0/24 dev vx0'. */
  what: string;
  /** Dump request (NLM_F_DUMP): collect messages until NLMSG_DONE. */
  dump?: boolean;
  /** Ask for an ACK (NLM_F_ACK) and complete on it; default: true unless `dump` or `reply`. */
  ack?: boolean;
  /** Complete on the first non-multipart reply message (a GET of one object). */
  reply?: boolean;
  /** Per-request timeout, ms (default: the socket's `timeoutMs`). */
  timeoutMs?: number;
}

/** Counters of one socket (for stats). */
export interface NlSocketStats {
  /** Requests sent. */
  requests: number;
  /** Requests that timed out. */
  timeouts: number;
  /** Messages with no pending request (late replies after a timeout, notifications). */
  unmatched: number;
  /** Datagrams that could not be parsed completely. */
  malformed: number;
}

interface Pending {
  seq: number;
  type: number;
  what: string;
  dump: boolean;
  ack: boolean;
  msgs: NlMessage[];
  timer: NodeJS.Timeout | null;
  settled: boolean;
  resolve: (msgs: NlMessage[]) => void;
  reject: (e: Error) => void;
}

/** One netlink socket with seq-matched asynchronous requests. */
export class NlSocket {
  /** Default per-request timeout, ms. */
  timeoutMs = 5000;
  /** Counters. */
  readonly stats: NlSocketStats = { requests: 0, timeouts: 0, unmatched: 0, malformed: 0 };
  private seq = 1 + Math.floor(Math.random() * 0x7ffffffe);
  private readonly pending = new Map<number, Pending>();
  private rbuf = Buffer.allocUnsafe(1 << 16);
  private sendQueue: { buf: Buffer; p: Pending }[] = [];
  private sending = false;
  /** The dump in progress (the kernel runs one dump per socket at a time: others wait). */
  private dumping: Pending | null = null;
  private dumpQueue: (() => void)[] = [];
  private closed = false;
  private transportClosed = false;

  constructor(private readonly transport: NlTransport) {}

  /** Open a NETLINK_ROUTE socket over the addon. */
  static open(): NlSocket {
    return new NlSocket(NativeNlTransport.open(0));
  }

  /** Number of requests waiting for their reply. */
  get inFlight(): number { return this.pending.size; }

  /**
   * Send a request and resolve with its reply messages (for an ACKed request: the messages
   * before the ACK, usually none). Rejects with an OsError carrying the kernel's errno and
   * extended ack message, ETIMEDOUT after the timeout, EBADF when the socket is closed.
   */
  request(type: number, flags: number, payload: Uint8Array, opts: RequestOptions): Promise<NlMessage[]> {
    return new Promise<NlMessage[]>((resolve, reject) => {
      if (this.closed) { reject(new OsError(EBADF, opts.what, 'netlink socket closed')); return; }
      const p = this.register(type, opts, resolve, reject);
      const start = (): void => {
        if (p.settled) return;
        if (p.dump) this.dumping = p;
        const buf = encodeMessage(type, this.flagsFor(flags, p), p.seq, payload);
        this.armTimer(p, opts.timeoutMs ?? this.timeoutMs);
        this.stats.requests++;
        this.sendQueue.push({ buf, p });
        this.pumpSends();
      };
      this.pending.set(p.seq, p);
      this.transport.watch(this.onReadable);
      if (p.dump && this.dumping) this.dumpQueue.push(start); else start();
    });
  }

  /**
   * Synchronous request (blocks the calling thread until the reply, up to the timeout).
   * Replies to other pending requests read on the way are dispatched to them.
   */
  requestSync(type: number, flags: number, payload: Uint8Array, opts: RequestOptions): NlMessage[] {
    if (this.closed) throw new OsError(EBADF, opts.what, 'netlink socket closed');
    let result: NlMessage[] | undefined;
    let error: Error | undefined;
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    // The kernel allows one dump per socket: finish a running async one first.
    while (opts.dump && this.dumping) this.pumpSync(deadline, opts.what);
    const p = this.register(type, opts, (m) => { result = m; }, (e) => { error = e; });
    this.pending.set(p.seq, p);
    if (p.dump) this.dumping = p;
    try {
      this.stats.requests++;
      this.transport.sendSync(encodeMessage(type, this.flagsFor(flags, p), p.seq, payload));
    } catch (e) {
      this.settle(p, wrapOsError(e, opts.what));
    }
    while (!p.settled) {
      try {
        this.pumpSync(deadline, opts.what);
      } catch (e) {
        this.settle(p, e as Error);
      }
    }
    if (error) throw error;
    return result ?? [];
  }

  /** Close the socket: every pending request rejects with EBADF. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending.values()]) this.settle(p, new OsError(EBADF, p.what, 'netlink socket closed'));
    this.dumpQueue = [];
    this.transport.stopWatch();
    // A send still running on the pool thread uses the fd: close when it returns.
    if (!this.sending) this.closeTransport();
  }

  // --- internals

  private flagsFor(flags: number, p: Pending): number {
    return flags | NLM_F_REQUEST | (p.dump ? NLM_F_DUMP : 0) | (p.ack ? NLM_F_ACK : 0);
  }

  private register(type: number, opts: RequestOptions, resolve: (m: NlMessage[]) => void, reject: (e: Error) => void): Pending {
    const dump = !!opts.dump;
    const ack = opts.ack ?? (!dump && !opts.reply);
    return { seq: this.nextSeq(), type, what: opts.what, dump, ack, msgs: [], timer: null, settled: false, resolve, reject };
  }

  private nextSeq(): number {
    do { this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1; } while (this.pending.has(this.seq));
    return this.seq;
  }

  private armTimer(p: Pending, ms: number): void {
    if (!Number.isFinite(ms) || ms <= 0) return;
    p.timer = setTimeout(() => {
      this.stats.timeouts++;
      this.settle(p, new OsError(ETIMEDOUT, p.what, `no reply from the kernel within ${ms} ms`));
    }, ms);
  }

  private settle(p: Pending, err: Error | null): void {
    if (p.settled) return;
    p.settled = true;
    if (p.timer) clearTimeout(p.timer);
    this.pending.delete(p.seq);
    if (this.dumping === p) {
      this.dumping = null;
      // Start the next queued dump (queued ones already settled, e.g. by a receive error, start nothing).
      while (!this.dumping && this.dumpQueue.length) this.dumpQueue.shift()!();
    }
    if (this.pending.size === 0) this.transport.stopWatch();
    if (err) p.reject(err); else p.resolve(p.msgs);
  }

  private pumpSends(): void {
    if (this.sending || this.transportClosed) return;
    // Requests whose caller gave up (timeout) before their turn are not sent.
    while (this.sendQueue.length && this.sendQueue[0].p.settled) this.sendQueue.shift();
    if (!this.sendQueue.length) return;
    // One datagram may carry several requests: the kernel processes them in order.
    const batch: { buf: Buffer; p: Pending }[] = [];
    let size = 0;
    while (this.sendQueue.length && size + this.sendQueue[0].buf.length <= 1 << 15) {
      const item = this.sendQueue.shift()!;
      if (item.p.settled) continue;
      batch.push(item);
      size += item.buf.length;
      if (item.p.dump) break; // after a dump starts the kernel skips the ACKs of the rest of the datagram
    }
    if (!batch.length) {
      // Only settled requests were left, or the head alone exceeds the batch size.
      const item = this.sendQueue.shift();
      if (!item) return;
      batch.push(item);
    }
    this.sending = true;
    const buf = batch.length === 1 ? batch[0].buf : Buffer.concat(batch.map((b) => b.buf));
    this.transport.send(buf, (errno) => {
      this.sending = false;
      if (this.closed) { this.closeTransport(); return; }
      if (errno !== 0) for (const b of batch) this.settle(b.p, new OsError(errno, b.p.what, 'netlink send'));
      this.pumpSends();
    });
  }

  private closeTransport(): void {
    if (this.transportClosed) return;
    this.transportClosed = true;
    this.transport.close();
  }

  private readonly onReadable = (): void => {
    // Bounded per wake-up; the level-triggered watcher calls again while data is queued.
    for (let i = 0; i < 64 && !this.closed; i++) {
      let n: number;
      try {
        n = this.transport.recv(this.rbuf);
      } catch (e) {
        this.failAll(e);
        return;
      }
      if (n < 0) return;
      this.ingest(n);
    }
  };

  /** One blocking receive for the sync path (throws ETIMEDOUT past the deadline). */
  private pumpSync(deadline: number, what: string): void {
    const left = deadline - Date.now();
    if (left <= 0) throw new OsError(ETIMEDOUT, what, 'no reply from the kernel in time');
    let n: number;
    try {
      n = this.transport.recvWait(this.rbuf, left);
    } catch (e) {
      this.failAll(e);
      throw wrapOsError(e, what);
    }
    if (n < 0) throw new OsError(ETIMEDOUT, what, 'no reply from the kernel in time');
    this.ingest(n);
  }

  /** A receive error: ENOBUFS means replies were lost, so no pending request can be trusted to complete. */
  private failAll(e: unknown): void {
    for (const p of [...this.pending.values()]) {
      const err = wrapOsError(e, p.what, (e as { code?: string }).code === 'ENOBUFS' ? 'netlink receive queue overrun: replies lost' : undefined);
      this.settle(p, err);
    }
  }

  private ingest(n: number): void {
    if (n > this.rbuf.length) {
      // Truncated datagram (the rest is lost): grow for next time, fail what it may have carried.
      this.rbuf = Buffer.allocUnsafe(Math.min(1 << 22, Math.max(n, this.rbuf.length * 2)));
      this.stats.malformed++;
      this.failAll(new OsError(EMSGSIZE, 'netlink recv', `datagram of ${n} bytes truncated`));
      return;
    }
    // Bodies are kept by pending requests: copy out of the reused receive buffer.
    const { messages, error } = parseMessages(Buffer.from(this.rbuf.subarray(0, n)));
    for (const m of messages) this.dispatch(m);
    if (error) this.malformed(error);
  }

  private malformed(error: ParseError): void {
    this.stats.malformed++;
    // The request the rest of the datagram belonged to cannot be known: the one dump, if any, is the likely owner.
    if (this.dumping) this.settle(this.dumping, new OsError(EPROTO, this.dumping.what, `malformed netlink reply (${error.reason} at ${error.offset})`));
  }

  /** Route one message to its pending request. */
  dispatch(m: NlMessage): void {
    const p = m.seq !== 0 ? this.pending.get(m.seq) : undefined;
    if (!p) { this.stats.unmatched++; return; }
    switch (m.type) {
      case NLMSG_NOOP:
        return;
      case NLMSG_ERROR: {
        const e = parseError(m.body, m.flags);
        if (!e.ok) { this.settle(p, new OsError(EPROTO, p.what, `malformed NLMSG_ERROR (${e.error.reason})`)); return; }
        if (e.value.errno === 0) this.settle(p, null);
        else this.settle(p, new OsError(e.value.errno, p.what, e.value.message));
        return;
      }
      case NLMSG_DONE: {
        // A dump that failed part-way reports the error in NLMSG_DONE (int, then optional ext-ack).
        const err = m.body.length >= 4 ? readI32(m.body, 0) : 0;
        if (err < 0) this.settle(p, new OsError(-err, p.what));
        else this.settle(p, null);
        return;
      }
      case NLMSG_OVERRUN:
        this.settle(p, new OsError(ENOBUFS, p.what, 'NLMSG_OVERRUN'));
        return;
      default:
        p.msgs.push(m);
        if (p.dump ? !(m.flags & NLM_F_MULTI) : !p.ack && !(m.flags & NLM_F_MULTI)) this.settle(p, null);
    }
  }
}
