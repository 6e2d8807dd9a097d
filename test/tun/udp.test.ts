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
