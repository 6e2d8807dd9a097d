/**
 * Child process for test/tun/offload.test.ts: runs inside `ip netns exec <ns>`. Mode = argv[2].
 * Prints JSON lines ({"ev":"ready"}, {"ev":"result"}...). Packet building here is a tiny local
 * helper on purpose (src/codec is developed separately); the virtio_net_hdr is read by hand.
 */
import net from 'node:net';
import {
  TunDevice, MmsgUdpTransport, allocDatagramSlots, HEADROOM, VNET_HDR_LEN, type PacketSlot, type DatagramSlot,
} from '../../src/tun/index.js';

const mode = process.argv[2];
const args = process.argv.slice(3);
const say = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
const onStdinEnd = (): void => { process.stdin.on('data', () => undefined); process.stdin.on('end', () => process.exit(0)); };

/** Ones-complement sum of b[off, off+len) added to `s` (not folded). */
function sum16(b: Buffer, off: number, len: number, s = 0): number {
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  return s;
}
const fold = (s: number): number => { while (s > 0xffff) s = (s & 0xffff) + (s >>> 16); return s; };
/** TCP/UDP pseudo-header sum for IPv4 packet at off with L4 length l4len. */
const pseudo4 = (b: Buffer, off: number, proto: number, l4len: number): number => sum16(b, off + 12, 8, proto + l4len);

/** virtio_net_hdr fields at buf[off - 10, off). */
function vnet(b: Buffer, off: number): { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number } {
  const h = off - VNET_HDR_LEN;
  return { flags: b[h], gsoType: b[h + 1], hdrLen: b.readUInt16LE(h + 2), gsoSize: b.readUInt16LE(h + 4), csumStart: b.readUInt16LE(h + 6), csumOffset: b.readUInt16LE(h + 8) };
}

/** Write an IPv4 header at off (20 bytes, valid checksum). */
function ip4(b: Buffer, off: number, proto: number, totLen: number, src: number[], dst: number[], id = 1): void {
  b[off] = 0x45; b[off + 1] = 0; b.writeUInt16BE(totLen, off + 2); b.writeUInt16BE(id, off + 4); b.writeUInt16BE(0x4000, off + 6);
  b[off + 8] = 64; b[off + 9] = proto; b.writeUInt16BE(0, off + 10);
  Buffer.from(src).copy(b, off + 12); Buffer.from(dst).copy(b, off + 16);
  b.writeUInt16BE(~fold(sum16(b, off, 20)) & 0xffff, off + 10);
}

/**
 * Offload TUN read: the kernel's TCP sends TSO super-packets into the device. We answer the SYN
 * ourselves (SYN-ACK built here, full checksum, zero vnet header) and never ACK the data.
 * Then a UDP GSO send from our own transport shows USO (GSO_UDP_L4) reads when accepted.
 */
async function tunRead(): Promise<void> {
  const dev = await TunDevice.create({ name: 'odoff0', mtu: 1500, addresses: ['198.19.20.1/24'], up: true, offload: true, batch: 16 });
  const peer = [198, 19, 20, 2];
  const supers: Record<string, unknown>[] = [];
  let udpSupers: Record<string, unknown>[] = [];
  let udpPlain = 0;
  let synAcked = false;
  const reply = { buf: Buffer.alloc(200), off: HEADROOM, len: 0 } as PacketSlot;
  dev.onBatch((slots, count) => {
    for (let i = 0; i < count; i++) {
      const s = slots[i], b = s.buf, o = s.off;
      if (b[o] >> 4 !== 4) continue;
      const h = vnet(b, o);
      const proto = b[o + 9], totLen = b.readUInt16BE(o + 2);
      if (proto === 6) {
        const th = o + 20, flags = b[th + 13];
        if (flags & 0x02 && !synAcked) {
          // SYN: answer SYN-ACK with MSS 1460 (no timestamps, no window scaling).
          synAcked = true;
          const r = reply.buf, ro = reply.off;
          r.fill(0, ro - VNET_HDR_LEN, ro);
          ip4(r, ro, 6, 44, peer, [198, 19, 20, 1]);
          const t = ro + 20;
          r.writeUInt16BE(b.readUInt16BE(th + 2), t); r.writeUInt16BE(b.readUInt16BE(th), t + 2);
          r.writeUInt32BE(1000, t + 4); r.writeUInt32BE((b.readUInt32BE(th + 4) + 1) >>> 0, t + 8);
          r[t + 12] = 6 << 4; r[t + 13] = 0x12; r.writeUInt16BE(65535, t + 14); r.writeUInt16BE(0, t + 16); r.writeUInt16BE(0, t + 18);
          r[t + 20] = 2; r[t + 21] = 4; r.writeUInt16BE(1460, t + 22);
          r.writeUInt16BE(~fold(pseudo4(r, ro, 6, 24) + sum16(r, t, 24)) & 0xffff, t + 16);
          reply.len = 44;
          say({ ev: 'synack', written: dev.writeBatch([reply], 1) });
        } else if (s.len > 1500) {
          supers.push({ ...h, len: s.len, totLen, payload: s.len - 20 - (b[th + 12] >> 4) * 4 });
        }
      } else if (proto === 17 && b.readUInt16BE(o + 22) === 7000) {
        if (s.len > 1500) udpSupers.push({ ...h, len: s.len, totLen, udpLen: b.readUInt16BE(o + 24) });
        else udpPlain++;
      }
    }
  });
  const sock = net.connect({ host: '198.19.20.2', port: 5000, localAddress: '198.19.20.1' });
  await new Promise<void>((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  sock.write(Buffer.alloc(200_000, 0x61));
  const deadline = Date.now() + 5000;
  while (supers.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  // UDP GSO into the device: 8 x 1200 bytes in one message.
  udpSupers = [];
  const t = new MmsgUdpTransport({ batch: 4 });
  t.bindSync(0, '198.19.20.1');
  const tx = allocDatagramSlots(1, 16384);
  const s0: DatagramSlot = tx[0];
  s0.off = HEADROOM; s0.len = 8 * 1200; s0.buf.fill(0x62, HEADROOM, HEADROOM + s0.len);
  s0.family = 4; s0.addr = (198 << 24 | 19 << 16 | 20 << 8 | 2) >>> 0; s0.port = 7000; s0.segSize = 1200;
  const sent = t.sendBatch(tx, 1);
  const udpResult = { sent, ...t.lastSend, gso: t.gso };
  const d2 = Date.now() + 2000;
  while (udpSupers.length === 0 && udpPlain < 8 && Date.now() < d2) await new Promise((r) => setTimeout(r, 50));
  say({ ev: 'result', offloads: dev.offloads, vnetHdr: dev.vnetHdr, slotSize: dev.slots[0].buf.length, synAcked, supers, udpSupers, udpPlain, udpResult });
  sock.destroy();
  t.close();
  dev.close();
  process.exit(0);
}

/**
 * Offload TUN write: a GSO_TCPV4 super-packet with NEEDS_CSUM written into offload TUN A is
 * forwarded by the kernel to plain TUN B (no offloads), so the kernel segments it and completes
 * the checksums; we read the MSS-sized segments from B and check them.
 */
async function tunWrite(): Promise<void> {
  const a = await TunDevice.create({ name: 'odoffa', mtu: 1500, addresses: ['198.19.21.1/24'], up: true, offload: true });
  const b = await TunDevice.create({ name: 'odoffb', mtu: 1500, addresses: ['198.19.22.1/24'], up: true });
  const segs: { len: number; seq: number; ttl: number; ipOk: boolean; tcpOk: boolean; payloadOk: boolean; flags: number }[] = [];
  const MSS = 1000, N = 10, PAY = MSS * N - 300; // last segment shorter
  const payload = Buffer.alloc(PAY);
  for (let i = 0; i < PAY; i++) payload[i] = (i * 7 + (i >> 8)) & 0xff;
  const SEQ = 0x10000000;
  b.onBatch((slots, count) => {
    for (let i = 0; i < count; i++) {
      const s = slots[i], p = s.buf, o = s.off;
      if (p[o] >> 4 !== 4 || p[o + 9] !== 6 || p.readUInt16BE(o + 22) !== 6000) continue;
      const seq = p.readUInt32BE(o + 24);
      const plen = s.len - 40;
      const ipOk = fold(sum16(p, o, 20)) === 0xffff && p.readUInt16BE(o + 2) === s.len;
      const tcpOk = fold(pseudo4(p, o, 6, s.len - 20) + sum16(p, o + 20, s.len - 20)) === 0xffff;
      const start = seq - SEQ;
      const payloadOk = start >= 0 && p.subarray(o + 40, o + 40 + plen).equals(payload.subarray(start, start + plen));
      segs.push({ len: s.len, seq: start, ttl: p[o + 8], ipOk, tcpOk, payloadOk, flags: p[o + 33] });
    }
  });
  // The super-packet: header at [off-10, off), IPv4 + TCP (20 + 20) + PAY bytes.
  const buf = Buffer.alloc(HEADROOM + 40 + PAY);
  const o = HEADROOM, tot = 40 + PAY;
  ip4(buf, o, 6, tot, [198, 19, 21, 2], [198, 19, 22, 2], 0x1234);
  const t = o + 20;
  buf.writeUInt16BE(6000, t); buf.writeUInt16BE(6000, t + 2); buf.writeUInt32BE(SEQ, t + 4); buf.writeUInt32BE(1, t + 8);
  buf[t + 12] = 5 << 4; buf[t + 13] = 0x18; buf.writeUInt16BE(65535, t + 14); buf.writeUInt16BE(0, t + 18);
  payload.copy(buf, t + 20);
  // NEEDS_CSUM: the checksum field holds the folded pseudo-header sum (full TCP length), not inverted.
  buf.writeUInt16BE(fold(pseudo4(buf, o, 6, tot - 20)), t + 16);
  const h = o - VNET_HDR_LEN;
  buf[h] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  buf[h + 1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
  buf.writeUInt16LE(40, h + 2); // hdr_len
  buf.writeUInt16LE(MSS, h + 4); // gso_size
  buf.writeUInt16LE(20, h + 6); // csum_start
  buf.writeUInt16LE(16, h + 8); // csum_offset
  const written = a.writeBatch([{ buf, off: o, len: tot }], 1);
  // A plain packet with a zero header goes through too (full checksum already there).
  const small = Buffer.alloc(HEADROOM + 40 + 100);
  ip4(small, o, 6, 140, [198, 19, 21, 2], [198, 19, 22, 2], 0x1235);
  small.writeUInt16BE(6000, t); small.writeUInt16BE(6000, t + 2); small.writeUInt32BE(SEQ + PAY, t + 4); small.writeUInt32BE(1, t + 8);
  small[t + 12] = 5 << 4; small[t + 13] = 0x18; small.writeUInt16BE(65535, t + 14);
  small.fill(0x33, t + 20, t + 120);
  small.writeUInt16BE(~fold(pseudo4(small, o, 6, 120) + sum16(small, t, 120)) & 0xffff, t + 16);
  const writtenPlain = a.writeBatch([{ buf: small, off: o, len: 140 }], 1);
  const deadline = Date.now() + 3000;
  while (segs.length < N + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  say({ ev: 'result', written, writtenPlain, segs, offloads: a.offloads });
  a.close(); b.close();
  process.exit(0);
}

/** UDP receiver: binds `addr` port 0 with gro on/off, reports each message (len, segSize). */
async function udpRecv(): Promise<void> {
  const [addr, gro] = args;
  const t = new MmsgUdpTransport({ batch: 64, gro: gro === '1' });
  t.bindSync(0, addr);
  const msgs: { len: number; segSize: number; port: number; split: number[]; contentOk: boolean; markers: number[] }[] = [];
  t.onBatch((slots, count) => {
    for (let i = 0; i < count; i++) {
      const s = slots[i], seg = s.segSize ?? 0;
      // Split the way a dataplane would: segSize chunks, the last may be shorter.
      const split: number[] = [];
      const markers: number[] = [];
      let contentOk = true;
      for (let p = 0; p < s.len; p += seg > 0 ? seg : s.len) {
        const n = seg > 0 ? Math.min(seg, s.len - p) : s.len;
        split.push(n);
        // Each datagram is filled with its own marker byte; all bytes of a datagram must agree.
        const first = s.buf[s.off + p];
        markers.push(first);
        for (let k = 1; k < n; k++) if (s.buf[s.off + p + k] !== first) { contentOk = false; break; }
        if (seg <= 0) break;
      }
      msgs.push({ len: s.len, segSize: seg, port: s.port, split, contentOk, markers });
    }
    say({ ev: 'msgs', msgs: msgs.splice(0) });
  });
  say({ ev: 'ready', port: t.localPort(), gro: t.gro, slotSize: t.slots[0].buf.length });
  onStdinEnd();
}

/**
 * UDP sender: one sendBatch with GSO runs to several receivers. argv: bindAddr, gso(1|0), then
 * dst:port:segSize:segments:lastLen... Datagram k of a run is filled with marker byte (runIndex*64 + k).
 */
async function udpSend(): Promise<void> {
  const [addr, gso, ...runs] = args;
  let fallback: string | null = null;
  // gso: '1' on, '0' off, 'nocheck' on but with SO_NO_CHECK (the kernel refuses GSO: fallback path).
  const t = new MmsgUdpTransport({ batch: 8, gso: gso !== '0', udpChecksum: gso !== 'nocheck', onGsoFallback: (c) => { fallback = c; } });
  t.bindSync(0, addr);
  // a run ending in ':g' is gathered: one slot per datagram (`parts` on the first), each in its own
  // buffer; ':f' the same slots back to back in the first slot's buffer (a segmented super-packet)
  const slotsOf = runs.map((r) => (r.endsWith(':g') || r.endsWith(':f') ? Number(r.split(':')[3]) : 1));
  const all = allocDatagramSlots(slotsOf.reduce((a, b) => a + b, 0), 70_000);
  let at = 0;
  runs.forEach((r, i) => {
    const [dst, port, seg, nseg, last, g] = r.split(':');
    const segSize = Number(seg), n = Number(nseg), lastLen = Number(last);
    const parts = dst.split('.').map(Number);
    const addr = ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
    if (g === 'g' || g === 'f') {
      const first = all[at]!;
      for (let k = 0; k < n; k++) {
        const s = all[at++];
        const len = k === n - 1 ? lastLen : segSize;
        s.family = 4; s.addr = addr; s.port = Number(port);
        if (g === 'f') { (s as { buf: Buffer }).buf = first.buf; s.off = HEADROOM + k * segSize; } else s.off = HEADROOM + 7 * k; // scattered: a different offset in each buffer
        s.len = len;
        s.segSize = k === 0 ? segSize : 0; s.parts = k === 0 ? n : 0;
        s.buf.fill((i * 64 + k) & 0xff, s.off, s.off + len);
      }
      return;
    }
    const s = all[at++];
    s.family = 4; s.addr = addr; s.port = Number(port);
    s.off = HEADROOM; s.segSize = segSize;
    let p = HEADROOM;
    for (let k = 0; k < n; k++) {
      const len = k === n - 1 ? lastLen : segSize;
      s.buf.fill((i * 64 + k) & 0xff, p, p + len);
      p += len;
    }
    s.len = p - HEADROOM;
  });
  const gsoBefore = t.gso;
  const sent = t.sendBatch(all.slice(0, at), at);
  say({ ev: 'result', sent, ...t.lastSend, gsoBefore, gso: t.gso, gsoError: t.gsoError, fallback });
  t.close();
  process.exit(0);
}

const modes: Record<string, () => Promise<void>> = { tunRead, tunWrite, udpRecv, udpSend };
const fn = modes[mode];
if (!fn) { say({ ev: 'error', message: `unknown mode ${mode}` }); process.exit(2); }
fn().catch((e: unknown) => { say({ ev: 'error', code: (e as { code?: string }).code, message: (e as Error).message, stack: (e as Error).stack }); process.exit(1); });
