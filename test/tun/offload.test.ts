/**
 * Offloads in network namespaces (issue #11): TUN with IFF_VNET_HDR + TUNSETOFFLOAD reads TSO/USO
 * super-packets and writes GSO_TCPV4 super-packets that the kernel segments; UDP GSO send over veth
 * arrives as plain datagrams, UDP GRO receive reports segSize; the transport's own split (no GSO)
 * produces the same datagrams. Each case runs test/tun/offload-child.ts inside a namespace.
 */
import { describe, expect, it, afterAll, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = join(ROOT, 'test', 'tun', 'offload-child.ts');

type Ev = Record<string, unknown> & { ev: string };
interface Msg { len: number; segSize: number; port: number; split: number[]; contentOk: boolean; markers: number[] }

/** A child running offload-child.ts in a namespace, with its JSON-line events. */
class Child {
  readonly events: Ev[] = [];
  stderr = '';
  exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { this.events.push(JSON.parse(line) as Ev); } catch { this.stderr += `stdout: ${line}\n`; }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  }
  /** Wait for the first event matching `pred` (rejects on child error, exit or timeout). */
  async wait(pred: (e: Ev) => boolean, timeoutMs = 20_000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      const err = this.events.find((e) => e.ev === 'error');
      if (err) throw new Error(`child error: ${JSON.stringify(err)} ${this.stderr}`);
      if (this.proc.exitCode !== null) throw new Error(`child exited ${this.proc.exitCode}: ${JSON.stringify(this.events)} ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timeout; events ${JSON.stringify(this.events)} ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  /** All messages reported so far by a udpRecv child. */
  msgs(): Msg[] { return this.events.filter((e) => e.ev === 'msgs').flatMap((e) => e.msgs as Msg[]); }
  /** Wait until a udpRecv child has seen `n` datagrams in total (after splitting), then a little more. */
  async datagrams(n: number): Promise<Msg[]> {
    await this.wait(() => this.msgs().reduce((a, m) => a + m.split.length, 0) >= n);
    await new Promise((r) => setTimeout(r, 150)); // anything extra would show up now
    return this.msgs();
  }
  end(): void { this.proc.stdin!.end(); }
}

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);

describe.runIf(requireNetns())('offloads in network namespaces', () => {
  const tb = new Testbed('off');
  let a: NsHost, b: NsHost;
  const start = (host: NsHost, mode: string, args: string[] = []): Child =>
    new Child(tb.track(host.spawn('node', ['--import', 'tsx', CHILD, mode, ...args], { cwd: ROOT })));

  beforeAll(() => {
    a = tb.host('a');
    b = tb.host('b');
    tb.link(a, 'veth0', '198.18.0.1/24', b, 'veth0', '198.18.0.2/24');
  });
  afterAll(() => tb.destroy());

  it('TUN offload read: TCP sends TSO super-packets (GSO_TCPV4, len > MTU), UDP GSO gives a GSO_UDP_L4 read', async () => {
    const c = start(a, 'tunRead');
    const r = await c.wait((e) => e.ev === 'result');
    expect(r.vnetHdr).toBe(true);
    expect(r.slotSize).toBeGreaterThanOrEqual(96 + 65535);
    const off = r.offloads as Record<string, boolean>;
    expect(off).toMatchObject({ csum: true, tso4: true, tso6: true });
    expect(r.synAcked).toBe(true);
    const supers = r.supers as { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number; len: number; totLen: number; payload: number }[];
    expect(supers.length).toBeGreaterThan(0);
    for (const s of supers) {
      expect(s.gsoType).toBe(1); // VIRTIO_NET_HDR_GSO_TCPV4
      expect(s.flags & 1).toBe(1); // NEEDS_CSUM
      expect(s.gsoSize).toBe(1460); // the MSS of our SYN-ACK
      expect(s.len).toBeGreaterThan(1500);
      expect(s.totLen).toBe(s.len); // IPv4 total length covers the whole super-packet
      expect(s.csumStart).toBe(20);
      expect(s.csumOffset).toBe(16);
      expect(s.hdrLen).toBeLessThanOrEqual(s.len);
    }
    const udp = r.udpResult as Record<string, unknown>;
    expect(udp).toMatchObject({ sent: 1, datagrams: 8, bytes: 9600, gsoMessages: 1, gso: true });
    const us = r.udpSupers as { gsoType: number; gsoSize: number; len: number; udpLen: number; csumOffset: number }[];
    if (off.uso4) {
      // USO accepted: the 8 x 1200 run crosses the device as one super-packet.
      expect(us).toHaveLength(1);
      expect(us[0]).toMatchObject({ gsoType: 5, gsoSize: 1200, len: 20 + 8 + 9600, csumOffset: 6 });
    } else {
      expect(r.udpPlain).toBe(8);
    }
    expect(await c.exited).toBe(0);
  });

  it('TUN offload write: a GSO_TCPV4 NEEDS_CSUM super-packet is segmented by the kernel into MSS-sized segments', async () => {
    a.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    const c = start(a, 'tunWrite');
    const r = await c.wait((e) => e.ev === 'result');
    expect(r.written).toBe(1);
    expect(r.writtenPlain).toBe(1);
    const segs = r.segs as { len: number; seq: number; ttl: number; ipOk: boolean; tcpOk: boolean; payloadOk: boolean; flags: number }[];
    expect(segs).toHaveLength(11);
    const tso = segs.slice(0, 10);
    expect(tso.map((s) => s.len)).toEqual([...Array(9).fill(1040), 740]);
    expect(tso.map((s) => s.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i * 1000));
    for (const s of segs) {
      expect(s.ipOk).toBe(true);
      expect(s.tcpOk).toBe(true); // the kernel completed the partial checksum
      expect(s.ttl).toBe(63); // forwarded
    }
    for (const s of tso) expect(s.payloadOk).toBe(true);
    expect(segs[10]).toMatchObject({ len: 140, seq: 9700 });
    expect(await c.exited).toBe(0);
  });

  /** Runs: 10 x 1200 (last 700) to r1, 5 x 1000 (last 400) to r2, and a plain 300-byte datagram to r1. */
  async function sendRuns(gso: boolean, groAtReceiver: boolean): Promise<{ res: Ev; m1: Msg[]; m2: Msg[] }> {
    const r1 = start(b, 'udpRecv', ['198.18.0.2', groAtReceiver ? '1' : '0']);
    const r2 = start(b, 'udpRecv', ['198.18.0.2', groAtReceiver ? '1' : '0']);
    try {
      const p1 = (await r1.wait((e) => e.ev === 'ready')).port as number;
      const p2 = (await r2.wait((e) => e.ev === 'ready')).port as number;
      const s = start(a, 'udpSend', ['198.18.0.1', gso ? '1' : '0', `198.18.0.2:${p1}:1200:10:700`, `198.18.0.2:${p2}:1000:5:400`, `198.18.0.2:${p1}:0:1:300`]);
      const res = await s.wait((e) => e.ev === 'result');
      const m1 = await r1.datagrams(11);
      const m2 = await r2.datagrams(5);
      return { res, m1, m2 };
    } finally {
      r1.end(); r2.end();
    }
  }

  it('UDP GSO: one sendmmsg with two GSO runs and a plain datagram arrives as plain datagrams at plain receivers', async () => {
    const { res, m1, m2 } = await sendRuns(true, false);
    expect(res).toMatchObject({ sent: 3, slots: 3, datagrams: 16, bytes: 11_500 + 4400 + 300, gsoMessages: 2, splitSlots: 0, dropped: 0, gso: true, gsoError: null });
    expect(m1.map((m) => m.len)).toEqual([...Array(9).fill(1200), 700, 300]);
    expect(m1.every((m) => m.segSize === 0 && m.contentOk)).toBe(true);
    expect(m2.map((m) => m.len)).toEqual([1000, 1000, 1000, 1000, 400]);
    expect(m2.every((m) => m.segSize === 0 && m.contentOk)).toBe(true);
  });

  it('UDP GRO: the same sends arrive coalesced with segSize set, and the split sizes add up', async () => {
    const { res, m1, m2 } = await sendRuns(true, true);
    expect(res).toMatchObject({ sent: 3, datagrams: 16, gsoMessages: 2 });
    // r1: the 10-datagram run in few messages with segSize 1200, plus the 300-byte datagram.
    const run1 = m1.filter((m) => m.len !== 300);
    expect(run1.length).toBeLessThan(10);
    expect(run1.some((m) => m.segSize === 1200)).toBe(true);
    expect(sum(run1.map((m) => m.len))).toBe(11_500);
    expect(run1.flatMap((m) => m.split)).toEqual([...Array(9).fill(1200), 700]);
    expect(m1.every((m) => m.contentOk)).toBe(true);
    expect(m2.length).toBeLessThan(5);
    expect(m2.flatMap((m) => m.split)).toEqual([1000, 1000, 1000, 1000, 400]);
    expect(m2.some((m) => m.segSize === 1000)).toBe(true);
  });

  it('UDP GSO refused by the kernel (SO_NO_CHECK socket: EINVAL): the batch is resent split from the refused message, reported once', async () => {
    const r1 = start(b, 'udpRecv', ['198.18.0.2', '0']);
    const r2 = start(b, 'udpRecv', ['198.18.0.2', '0']);
    try {
      const p1 = (await r1.wait((e) => e.ev === 'ready')).port as number;
      const p2 = (await r2.wait((e) => e.ev === 'ready')).port as number;
      // A plain datagram first (sent), then two GSO runs: the first is refused, both go split.
      const s = start(a, 'udpSend', ['198.18.0.1', 'nocheck', `198.18.0.2:${p1}:0:1:300`, `198.18.0.2:${p2}:1000:5:400`, `198.18.0.2:${p1}:1200:3:500`]);
      const res = await s.wait((e) => e.ev === 'result');
      expect(res).toMatchObject({ sent: 3, slots: 3, datagrams: 9, bytes: 300 + 4400 + 2900, dropped: 0, gsoMessages: 0, splitSlots: 2, gsoBefore: true, gso: false, gsoError: 'EINVAL', fallback: 'EINVAL' });
      const m1 = await r1.datagrams(4);
      const m2 = await r2.datagrams(5);
      expect(m1.map((m) => m.len)).toEqual([300, 1200, 1200, 500]); // the plain one not sent twice
      expect(m2.map((m) => m.len)).toEqual([1000, 1000, 1000, 1000, 400]);
      expect([...m1, ...m2].every((m) => m.contentOk)).toBe(true);
    } finally {
      r1.end(); r2.end();
    }
  });

  /**
   * A gathered run (10 slots in 10 buffers, or with `flat` back to back in one: 9 x 1200 + 700,
   * `parts` on the first) and a plain 300-byte datagram, to one receiver.
   */
  async function sendGathered(gso: '1' | '0' | 'nocheck', groAtReceiver: boolean, flat = false): Promise<{ res: Ev; m: Msg[] }> {
    const r = start(b, 'udpRecv', ['198.18.0.2', groAtReceiver ? '1' : '0']);
    try {
      const p = (await r.wait((e) => e.ev === 'ready')).port as number;
      const s = start(a, 'udpSend', ['198.18.0.1', gso, `198.18.0.2:${p}:1200:10:700:${flat ? 'f' : 'g'}`, `198.18.0.2:${p}:0:1:300`]);
      const res = await s.wait((e) => e.ev === 'result');
      return { res, m: await r.datagrams(11) };
    } finally {
      r.end();
    }
  }
  const GATHERED = [...Array(9).fill(1200), 700, 300];
  const MARKERS = [...Array.from({ length: 10 }, (_, k) => k), 64];

  it('UDP GSO gathered from 10 buffers: one message, the same datagrams in order as contiguous bytes would give', async () => {
    const { res, m } = await sendGathered('1', false);
    expect(res).toMatchObject({ sent: 11, slots: 11, datagrams: 11, bytes: 11_500 + 300, gsoMessages: 1, splitSlots: 0, dropped: 0, gso: true, iovecs: 11 });
    expect(m.map((x) => x.len)).toEqual(GATHERED);
    expect(m.flatMap((x) => x.markers)).toEqual(MARKERS);
    expect(m.every((x) => x.segSize === 0 && x.contentOk)).toBe(true);
  });

  it('a gathered run whose slots lie back to back in one buffer goes as one message of one iovec; without GSO, split the same', async () => {
    for (const gso of ['1', 'nocheck'] as const) {
      const { res, m } = await sendGathered(gso, false, true);
      expect(res).toMatchObject({ sent: 11, slots: 11, datagrams: 11, bytes: 11_500 + 300, dropped: 0, gsoMessages: gso === '1' ? 1 : 0 });
      if (gso === '1') expect(res.iovecs, 'the run and the plain datagram: two iovecs').toBe(2);
      expect(m.map((x) => x.len)).toEqual(GATHERED);
      expect(m.flatMap((x) => x.markers)).toEqual(MARKERS);
      expect(m.every((x) => x.segSize === 0 && x.contentOk)).toBe(true);
    }
  });

  it('UDP GSO gathered, GRO at the receiver: coalesced with segSize 1200, split back in order', async () => {
    const { res, m } = await sendGathered('1', true);
    expect(res).toMatchObject({ sent: 11, gsoMessages: 1 });
    expect(m.length).toBeLessThan(11);
    expect(m.some((x) => x.segSize === 1200)).toBe(true);
    expect(m.flatMap((x) => x.split)).toEqual(GATHERED);
    expect(m.flatMap((x) => x.markers)).toEqual(MARKERS);
    expect(m.every((x) => x.contentOk)).toBe(true);
  });

  it('UDP GSO gathered without GSO (disabled, or refused for SO_NO_CHECK): plain datagrams, same order', async () => {
    for (const gso of ['0', 'nocheck'] as const) {
      const { res, m } = await sendGathered(gso, false);
      expect(res).toMatchObject({ sent: 11, slots: 11, datagrams: 11, gsoMessages: 0, gso: false });
      if (gso === 'nocheck') expect(res).toMatchObject({ gsoBefore: true, fallback: 'EINVAL' });
      expect(m.map((x) => x.len)).toEqual(GATHERED);
      expect(m.flatMap((x) => x.markers)).toEqual(MARKERS);
    }
  });

  it('UDP GSO disabled: the transport splits the runs itself into the same datagrams, still one call', async () => {
    const { res, m1, m2 } = await sendRuns(false, false);
    expect(res).toMatchObject({ sent: 3, slots: 3, datagrams: 16, bytes: 16_200, gsoMessages: 0, splitSlots: 2, gsoBefore: false, gso: false, fallback: null });
    expect(m1.map((m) => m.len)).toEqual([...Array(9).fill(1200), 700, 300]);
    expect(m2.map((m) => m.len)).toEqual([1000, 1000, 1000, 1000, 400]);
    expect([...m1, ...m2].every((m) => m.contentOk)).toBe(true);
  });
});
