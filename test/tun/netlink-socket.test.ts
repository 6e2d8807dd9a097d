/** NlSocket (src/tun/netlink/socket.ts) over a fake transport: seq matching with interleaved replies, dumps, timeouts, errors. */
import { describe, expect, it } from 'vitest';
import { NlSocket, type NlTransport } from '../../src/tun/netlink/socket.js';
import {
  NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, encodeError, encodeMessage, parseMessages, type NlMessage,
} from '../../src/tun/netlink/message.js';
import { OsError } from '../../src/tun/errors.js';

const RTM_NEWLINK = 16, RTM_GETLINK = 18, RTM_NEWROUTE = 24;

/** A kernel stand-in: records requests, lets the test queue reply datagrams in any order. */
class FakeKernel implements NlTransport {
  sent: NlMessage[] = [];
  queue: Buffer[] = [];
  watching = false;
  closed = false;
  sendErrno = 0;
  /** Called for synchronous sends (to queue replies before the blocking receive). */
  onSendSync: ((m: NlMessage) => void) | null = null;
  private onReadable: (() => void) | null = null;

  /** When set, sends stay "in the kernel" (as if blocked on rtnl_lock) until release(). */
  hold = false;
  private held: (() => void)[] = [];
  send(buf: Buffer, done: (errno: number) => void): void {
    const errno = this.sendErrno;
    if (!errno) this.sent.push(...parseMessages(Buffer.from(buf)).messages);
    if (this.hold) this.held.push(() => done(errno)); else setImmediate(() => done(errno));
  }
  release(): void { this.hold = false; this.held.splice(0).forEach((f) => f()); }
  sendSync(buf: Buffer): void {
    const msgs = parseMessages(Buffer.from(buf)).messages;
    this.sent.push(...msgs);
    for (const m of msgs) this.onSendSync?.(m);
  }
  recv(buf: Buffer): number {
    const d = this.queue.shift();
    if (!d) return -1;
    d.copy(buf);
    return d.length;
  }
  recvWait(buf: Buffer): number { return this.recv(buf); }
  watch(cb: () => void): void { this.watching = true; this.onReadable = cb; }
  stopWatch(): void { this.watching = false; }
  close(): void { this.closed = true; }

  /** Queue one datagram made of `msgs` and signal readability. */
  deliver(...msgs: Buffer[]): void {
    this.queue.push(Buffer.concat(msgs));
    if (this.watching) this.onReadable?.();
  }
  /** Wait until `n` requests were sent. */
  async sentCount(n: number): Promise<NlMessage[]> {
    for (let i = 0; i < 100 && this.sent.length < n; i++) await new Promise((r) => setImmediate(r));
    expect(this.sent.length).toBe(n);
    return this.sent;
  }
}

const ack = (seq: number, errno = 0, msg?: string): Buffer => {
  const e = encodeError(errno, { type: RTM_NEWROUTE, seq }, msg);
  return encodeMessage(NLMSG_ERROR, e.flags, seq, e.body);
};
const link = (seq: number, index: number, multi = true): Buffer => {
  const body = Buffer.alloc(16);
  body.writeInt32LE(index, 4);
  return encodeMessage(RTM_NEWLINK, multi ? NLM_F_MULTI : 0, seq, body);
};
const done = (seq: number): Buffer => encodeMessage(NLMSG_DONE, NLM_F_MULTI, seq, Buffer.alloc(4));

describe('NlSocket', () => {
  it('matches interleaved replies to many in-flight requests by seq; dumps collect until NLMSG_DONE', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const a = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'A' });
    const b = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'B', dump: true });
    const c = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'C', reply: true });
    const d = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'D' });
    const [ma, mb, mc, md] = await k.sentCount(4);
    expect(new Set([ma.seq, mb.seq, mc.seq, md.seq]).size).toBe(4);
    expect(ma.flags & NLM_F_ACK).toBeTruthy();
    expect(mb.flags & NLM_F_DUMP).toBe(NLM_F_DUMP);
    expect(mc.flags & NLM_F_ACK).toBe(0);
    expect(s.inFlight).toBe(4);
    // Replies out of order, several requests' messages in one datagram.
    k.deliver(link(mb.seq, 1), ack(md.seq));
    k.deliver(link(mc.seq, 9, false), ack(ma.seq, 17, 'File exists'), link(mb.seq, 2));
    expect(s.inFlight).toBe(1);
    k.deliver(link(mb.seq, 3), done(mb.seq));
    await expect(a).rejects.toMatchObject({ code: 'EEXIST', syscall: 'A', message: 'A: EEXIST: File exists' });
    expect((await b).map((m) => m.body.readInt32LE(4))).toEqual([1, 2, 3]);
    expect((await c).map((m) => m.body.readInt32LE(4))).toEqual([9]);
    expect(await d).toEqual([]);
    expect(s.inFlight).toBe(0);
    expect(k.watching).toBe(false);
  });

  it('a timeout rejects only its request; its late reply is counted as unmatched', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const slow = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'slow', timeoutMs: 30 });
    const fast = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'fast' });
    const [m1, m2] = await k.sentCount(2);
    const t0 = Date.now();
    await expect(slow).rejects.toMatchObject({ code: 'ETIMEDOUT', syscall: 'slow' });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(s.inFlight).toBe(1);
    k.deliver(ack(m1.seq), ack(m2.seq));
    await expect(fast).resolves.toEqual([]);
    expect(s.stats).toMatchObject({ requests: 2, timeouts: 1, unmatched: 1 });
  });

  it('runs one dump at a time (the kernel rejects a second with EBUSY); the next starts after NLMSG_DONE', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const d1 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'd1', dump: true });
    const d2 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'd2', dump: true });
    const r = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'r' });
    const [m1, m3] = await k.sentCount(2);
    expect(m3.type).toBe(RTM_NEWROUTE);
    k.deliver(ack(m3.seq), link(m1.seq, 1), done(m1.seq));
    const [, , m2] = await k.sentCount(3);
    k.deliver(link(m2.seq, 2), done(m2.seq));
    expect((await d1).length).toBe(1);
    expect((await d2).length).toBe(1);
    await r;
  });

  it('malformed, truncated and error-carrying replies reject with typed errors', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const d = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'dump', dump: true });
    const [m] = await k.sentCount(1);
    k.deliver(link(m.seq, 1), link(m.seq, 2).subarray(0, 20));
    await expect(d).rejects.toMatchObject({ code: 'EPROTO', message: expect.stringMatching(/truncated/) });
    expect(s.stats.malformed).toBe(1);
    // A dump that fails part-way reports the errno in NLMSG_DONE.
    const d2 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'dump2', dump: true });
    const [, m2] = await k.sentCount(2);
    const body = Buffer.alloc(4); body.writeInt32LE(-4, 0);
    k.deliver(encodeMessage(NLMSG_DONE, NLM_F_MULTI, m2.seq, body));
    await expect(d2).rejects.toMatchObject({ code: 'EINTR' });
  });

  it('send errors and close() reject the pending requests with errno codes', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    k.sendErrno = 1;
    await expect(s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'x' })).rejects.toMatchObject({ code: 'EPERM', message: expect.stringMatching(/needs CAP_NET_ADMIN/) });
    k.sendErrno = 0;
    const p = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'y' });
    s.close();
    await expect(p).rejects.toBeInstanceOf(OsError);
    await expect(p).rejects.toMatchObject({ code: 'EBADF' });
    await expect(s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'z' })).rejects.toMatchObject({ code: 'EBADF' });
    await new Promise((r) => setImmediate(r));
    expect(k.closed).toBe(true);
  });

  it('a synchronous request also dispatches replies of pending async requests it reads', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const async1 = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'async' });
    const [ma] = await k.sentCount(1);
    k.onSendSync = (m) => { k.queue.push(ack(ma.seq)); k.queue.push(Buffer.concat([link(m.seq, 5), done(m.seq)])); };
    const msgs = s.requestSync(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'sync', dump: true });
    expect(msgs.map((m) => m.body.readInt32LE(4))).toEqual([5]);
    await expect(async1).resolves.toEqual([]);
    // Nothing queued: the sync request times out instead of hanging.
    k.onSendSync = null;
    expect(() => s.requestSync(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'lost', timeoutMs: 20 })).toThrow(/ETIMEDOUT/);
  });
});

describe('NlSocket queues', () => {
  it('requests that time out before their turn are never sent; later requests still go out', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    k.hold = true;
    const first = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'first' });
    // These wait behind `first` (its send is stuck in the kernel) and time out meanwhile.
    const gone = [1, 2, 3].map((i) => s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: `gone${i}`, timeoutMs: 1 }));
    await Promise.all(gone.map((g) => expect(g).rejects.toMatchObject({ code: 'ETIMEDOUT' })));
    k.release();
    const [m1] = await k.sentCount(1);
    const last = s.request(RTM_NEWROUTE, 0, Buffer.alloc(12), { what: 'last' });
    const sent = await k.sentCount(2);
    k.deliver(ack(m1.seq), ack(sent[1].seq));
    await first;
    await last;
  });

  it('a receive error fails every pending request, queued dumps included, and the socket stays usable', async () => {
    const k = new FakeKernel();
    const s = new NlSocket(k);
    const d1 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'd1', dump: true });
    const d2 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'd2', dump: true });
    await k.sentCount(1);
    const recv = k.recv.bind(k);
    k.recv = () => { throw Object.assign(new Error('netlink recv: No buffer space available'), { code: 'ENOBUFS', errno: -105, syscall: 'netlink recv' }); };
    k.deliver(Buffer.alloc(0));
    await expect(d1).rejects.toMatchObject({ code: 'ENOBUFS', cause: expect.objectContaining({ code: 'ENOBUFS' }) });
    await expect(d2).rejects.toMatchObject({ code: 'ENOBUFS' });
    k.recv = recv;
    k.queue = [];
    const d3 = s.request(RTM_GETLINK, 0, Buffer.alloc(16), { what: 'd3', dump: true });
    const sent = await k.sentCount(k.sent.length >= 2 ? 3 : 2);
    const m3 = sent[sent.length - 1];
    k.deliver(link(m3.seq, 4), done(m3.seq));
    expect((await d3).length).toBe(1);
  });
});
