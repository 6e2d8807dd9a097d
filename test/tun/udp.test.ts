/**
 * UDP transports over loopback only: the recvmmsg/sendmmsg socket and node:dgram move
 * the same datagrams (content, source address and port), in batches, IPv4 and IPv6.
 */
import { describe, expect, it, afterEach } from 'vitest';
import dgram from 'node:dgram';
import {
  createTransport, allocDatagramSlots, HEADROOM, MmsgUdpTransport, DgramUdpTransport,
  type DatagramSlot, type UdpTransport,
} from '../../src/tun/index.js';

const LOOP4 = 0x7f000001;
const open: UdpTransport[] = [];
afterEach(() => { open.splice(0).forEach((t) => t.close()); });

async function pair(rk: 'mmsg' | 'dgram', sk: 'mmsg' | 'dgram', addr = '127.0.0.1'): Promise<[UdpTransport, UdpTransport]> {
  const r = createTransport(rk, { batch: 32 });
  const s = createTransport(sk, { batch: 32 });
  open.push(r, s);
  await r.bind(0, addr);
  await s.bind(0, addr);
  return [r, s];
}

function collect(t: UdpTransport, want: number): { batches: number[]; got: { data: string; family: number; addr: number; addr6: string; port: number; off: number }[]; done: Promise<void> } {
  const batches: number[] = [];
  const got: { data: string; family: number; addr: number; addr6: string; port: number; off: number }[] = [];
  let resolve!: () => void;
  const done = new Promise<void>((r) => { resolve = r; });
  t.onBatch((slots: DatagramSlot[], count: number) => {
    batches.push(count);
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      got.push({ data: s.buf.toString('latin1', s.off, s.off + s.len), family: s.family, addr: s.addr, addr6: Buffer.from(s.addr6).toString('hex'), port: s.port, off: s.off });
    }
    if (got.length >= want) resolve();
  });
  return { batches, got, done };
}

function fill(n: number, dst: { family: 4 | 6; addr?: number; addr6?: Uint8Array; port: number }, size = 0): DatagramSlot[] {
  const tx = allocDatagramSlots(n, 4096);
  tx.forEach((t, i) => {
    const payload = size ? Buffer.alloc(size, 65 + (i % 26)) : Buffer.from(`datagram-${i}-${'x'.repeat(i)}`);
    t.off = HEADROOM;
    t.len = payload.copy(t.buf, HEADROOM);
    t.family = dst.family;
    t.addr = dst.addr ?? 0;
    if (dst.addr6) t.addr6.set(dst.addr6);
    t.port = dst.port;
  });
  return tx;
}

const withTimeout = <T>(p: Promise<T>, ms = 5000): Promise<T> =>
  Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error('timeout')), ms))]);

describe('UDP transports over loopback', () => {
  for (const [rk, sk] of [['mmsg', 'mmsg'], ['mmsg', 'dgram'], ['dgram', 'mmsg'], ['dgram', 'dgram']] as const) {
    it(`${sk} -> ${rk}: same datagrams, source address and port (IPv4)`, async () => {
      const [r, s] = await pair(rk, sk);
      expect(r.kind).toBe(rk);
      expect(s.localPort()).toBeGreaterThan(0);
      const c = collect(r, 10);
      const tx = fill(10, { family: 4, addr: LOOP4, port: r.localPort() });
      expect(s.sendBatch(tx, 10)).toBe(10);
      await withTimeout(c.done);
      expect(c.got.map((g) => g.data)).toEqual(tx.map((t) => t.buf.toString('latin1', t.off, t.off + t.len)));
      for (const g of c.got) {
        expect(g.family).toBe(4);
        expect(g.addr).toBe(LOOP4);
        expect(g.port).toBe(s.localPort());
        expect(g.off).toBe(HEADROOM);
      }
    });
  }

  for (const k of ['mmsg', 'dgram'] as const) {
    it(`${k}: IPv6 loopback delivers addr6 and port`, async () => {
      const [r, s] = await pair(k, k, '::1');
      const c = collect(r, 3);
      const a6 = new Uint8Array(16); a6[15] = 1;
      const tx = fill(3, { family: 6, addr6: a6, port: r.localPort() }, 1400);
      expect(s.sendBatch(tx, 3)).toBe(3);
      await withTimeout(c.done);
      for (const g of c.got) {
        expect(g.family).toBe(6);
        expect(g.addr6).toBe('00000000000000000000000000000001');
        expect(g.port).toBe(s.localPort());
        expect(g.data.length).toBe(1400);
      }
    });
  }

  it('mmsg: datagrams queued before reading arrive in one recvmmsg batch', async () => {
    const r = new MmsgUdpTransport({ batch: 64 });
    open.push(r);
    await r.bind(0, '127.0.0.1');
    const sender = dgram.createSocket('udp4');
    await new Promise<void>((res) => sender.bind(0, '127.0.0.1', res));
    for (let i = 0; i < 16; i++) await new Promise<void>((res) => sender.send(Buffer.from(`q${i}`), r.localPort(), '127.0.0.1', () => res()));
    const c = collect(r, 16);
    await withTimeout(c.done);
    sender.close();
    expect(c.batches[0]).toBeGreaterThanOrEqual(2);
    expect(c.got.map((g) => g.data)).toEqual(Array.from({ length: 16 }, (_, i) => `q${i}`));
  });

  it('dgram: messages of one event-loop turn are coalesced into one batch', async () => {
    const r = new DgramUdpTransport({ batch: 64 });
    const s = new MmsgUdpTransport();
    open.push(r, s);
    await r.bind(0, '127.0.0.1');
    await s.bind(0, '127.0.0.1');
    const c = collect(r, 20);
    s.sendBatch(fill(20, { family: 4, addr: LOOP4, port: r.localPort() }), 20);
    await withTimeout(c.done);
    expect(c.batches.length).toBeLessThan(20);
    expect(Math.max(...c.batches)).toBeGreaterThanOrEqual(2);
  });

  it('mmsg: connect() sets the default peer (port 0 slots) and close() is idempotent', async () => {
    const [r, s] = await pair('mmsg', 'mmsg');
    await (s as MmsgUdpTransport).connect('127.0.0.1', r.localPort());
    const c = collect(r, 2);
    expect(s.sendBatch(fill(2, { family: 4, port: 0 }), 2)).toBe(2);
    await withTimeout(c.done);
    expect(c.got[0].port).toBe(s.localPort());
    s.close();
    s.close();
    expect(s.sendBatch(fill(1, { family: 4, addr: LOOP4, port: r.localPort() }), 1)).toBe(0);
  });

  it('mmsg: bind errors carry errno names', async () => {
    const [r] = await pair('mmsg', 'mmsg');
    const t = new MmsgUdpTransport();
    open.push(t);
    await expect(t.bind(r.localPort(), '127.0.0.1')).rejects.toMatchObject({ code: 'EADDRINUSE' });
    const u = new MmsgUdpTransport();
    open.push(u);
    await expect(u.bind(0, 'not-an-ip')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('createTransport rejects unknown kinds', () => {
    expect(() => createTransport('nope' as 'mmsg')).toThrow(/unknown transport kind/);
  });
});

describe('mmsg UDP GSO/GRO over loopback', () => {
  /** `n` datagrams of `seg` bytes (last `last` bytes) in one slot; datagram k is filled with byte k. */
  function run(slot: DatagramSlot, seg: number, n: number, last: number): void {
    let p = HEADROOM;
    for (let k = 0; k < n; k++) { const l = k === n - 1 ? last : seg; slot.buf.fill(k, p, p + l); p += l; }
    slot.off = HEADROOM; slot.len = p - HEADROOM; slot.segSize = seg;
  }
  /** Split received slots by segSize into datagram lengths; checks each datagram's fill byte. */
  function splitAll(got: { len: number; seg: number; first: number[] }[]): number[] {
    const out: number[] = [];
    for (const g of got) {
      if (g.seg === 0) { out.push(g.len); continue; }
      for (let p = 0; p < g.len; p += g.seg) out.push(Math.min(g.seg, g.len - p));
    }
    return out;
  }
  function gather(t: MmsgUdpTransport): { got: { len: number; seg: number; first: number[] }[]; total: () => number } {
    const got: { len: number; seg: number; first: number[] }[] = [];
    t.onBatch((slots, count) => {
      for (let i = 0; i < count; i++) {
        const s = slots[i], seg = s.segSize ?? 0, first: number[] = [];
        for (let p = 0; p < s.len; p += seg || s.len) first.push(s.buf[s.off + p]);
        got.push({ len: s.len, seg, first });
      }
    });
    return { got, total: () => splitAll(got).length };
  }
  async function until(f: () => boolean, ms = 3000): Promise<void> {
    const end = Date.now() + ms;
    while (!f()) { if (Date.now() > end) throw new Error('timeout'); await new Promise((r) => setTimeout(r, 20)); }
    await new Promise((r) => setTimeout(r, 50));
  }

  for (const [fam, addr] of [[4, '127.0.0.1'], [6, '::1']] as const) {
    it(`IPv${fam}: a 10-segment GSO send arrives as 10 datagrams, or coalesced with segSize under GRO`, async () => {
      const plain = new MmsgUdpTransport({ batch: 32 });
      const gro = new MmsgUdpTransport({ batch: 32, gro: true });
      const s = new MmsgUdpTransport({ batch: 4 });
      open.push(plain, gro, s);
      for (const t of [plain, gro, s]) await t.bind(0, addr);
      expect(s.gso).toBe(true);
      expect(gro.gro).toBe(true);
      expect(gro.slots[0].buf.length).toBeGreaterThanOrEqual(HEADROOM + 65535);
      const pg = gather(plain), gg = gather(gro);
      const tx = allocDatagramSlots(2, 70_000);
      for (const [i, t] of [plain, gro].entries()) {
        run(tx[i], 1300, 10, 500);
        tx[i].family = fam; tx[i].port = t.localPort();
        if (fam === 4) tx[i].addr = LOOP4; else { tx[i].addr6.fill(0); tx[i].addr6[15] = 1; }
      }
      expect(s.sendBatch(tx, 2)).toBe(2);
      expect(s.lastSend).toMatchObject({ slots: 2, datagrams: 20, bytes: 2 * (9 * 1300 + 500), gsoMessages: 2, splitSlots: 0, dropped: 0 });
      await until(() => pg.total() >= 10 && gg.total() >= 10);
      expect(pg.got.map((g) => g.len)).toEqual([...Array(9).fill(1300), 500]);
      expect(pg.got.every((g) => g.seg === 0)).toBe(true);
      expect(pg.got.map((g) => g.first[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(gg.got.length).toBeLessThan(10);
      expect(gg.got[0].seg).toBe(1300);
      expect(splitAll(gg.got)).toEqual([...Array(9).fill(1300), 500]);
      expect(gg.got.flatMap((g) => g.first)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });
  }

  it('over the limits (more than 64 segments) a run is split by the transport even with GSO on', async () => {
    const r = new MmsgUdpTransport({ batch: 128 });
    const s = new MmsgUdpTransport();
    open.push(r, s);
    await r.bind(0, '127.0.0.1');
    await s.bind(0, '127.0.0.1');
    const g = gather(r);
    const tx = allocDatagramSlots(1, 70_000);
    run(tx[0], 100, 70, 100);
    tx[0].family = 4; tx[0].addr = LOOP4; tx[0].port = r.localPort();
    expect(s.sendBatch(tx, 1)).toBe(1);
    expect(s.lastSend).toMatchObject({ datagrams: 70, bytes: 7000, gsoMessages: 0, splitSlots: 1 });
    expect(s.gso).toBe(true);
    await until(() => g.total() >= 70);
    expect(g.got.map((x) => x.len)).toEqual(Array(70).fill(100));
  });

  it('dgram transport: a segSize run goes out as one datagram per segment', async () => {
    const r = new MmsgUdpTransport({ batch: 32 });
    const s = new DgramUdpTransport();
    open.push(r, s);
    await r.bind(0, '127.0.0.1');
    await s.bind(0, '127.0.0.1');
    const g = gather(r);
    const tx = allocDatagramSlots(1, 16_384);
    run(tx[0], 1000, 4, 10);
    tx[0].family = 4; tx[0].addr = LOOP4; tx[0].port = r.localPort();
    expect(s.sendBatch(tx, 1)).toBe(1);
    await until(() => g.total() >= 4);
    expect(g.got.map((x) => x.len)).toEqual([1000, 1000, 1000, 10]);
    expect(g.got.map((x) => x.first[0])).toEqual([0, 1, 2, 3]);
  });

  it('no allocation per call on the split send path and the GRO receive path', async () => {
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    const r = new MmsgUdpTransport({ batch: 64, gro: true, rcvbuf: 1 << 20 });
    const s = new MmsgUdpTransport({ batch: 8, gso: false });
    const sg = new MmsgUdpTransport({ batch: 8 });
    open.push(r, s, sg);
    await r.bind(0, '127.0.0.1');
    await s.bind(0, '127.0.0.1');
    await sg.bind(0, '127.0.0.1');
    const tx = allocDatagramSlots(3, 16_384);
    run(tx[0], 1000, 8, 200); run(tx[1], 500, 3, 500);
    tx[2].off = HEADROOM; tx[2].len = 64; tx[2].segSize = 0;
    for (const t of tx) { t.family = 4; t.addr = LOOP4; t.port = r.localPort(); }
    let dgrams = 0; // coalesced (segSize > 0) messages received
    const pump = (rounds: number): void => {
      for (let i = 0; i < rounds; i++) {
        s.sendBatch(tx, 3);
        sg.sendBatch(tx, 3);
        for (let n = r.recvBatch(); n > 0; n = r.recvBatch()) {
          for (let k = 0; k < n; k++) if ((r.slots[k].segSize ?? 0) > 0) dgrams++;
        }
      }
    };
    pump(2000); // warm up (JIT, grow-once arrays)
    let scavenges = 0;
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (((e as unknown as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
    });
    obs.observe({ entryTypes: ['gc'] });
    pump(30_000);
    await new Promise((res) => setTimeout(res, 50));
    obs.disconnect();
    expect(dgrams).toBeGreaterThan(0);
    expect(s.lastSend.splitSlots).toBe(2);
    expect(sg.lastSend.gsoMessages).toBe(2);
    expect(scavenges).toBeLessThanOrEqual(2);
  });
});
