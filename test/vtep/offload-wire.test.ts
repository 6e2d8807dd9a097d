/**
 * Wire equivalence of the offloaded send path (issue #11): what an offloaded VTEP puts on the
 * underlay (TUN TSO super-packets segmented in TypeScript, sent as UDP GSO runs that the
 * kernel splits) must be the same datagrams the plain path sends for the same data: every
 * frame within the underlay MTU, no IP fragments, valid inner IPv4 and TCP checksums, the
 * same header fields and the same full-size datagram length, and the TCP payload
 * reassembled from the capture equal to what the application sent. Only the fields a
 * sender picks per packet differ (IP IDs, UDP source port, sequence numbers, timestamps).
 *
 * Two senders of ours share a LAN with one receiver: a (offload 'auto') and c (offload
 * 'off') each send 4 MB over TCP to b, and tcpdump on b's underlay records both. (a's veth
 * has UDP segmentation offload turned off so the kernel splits each GSO run before it leaves,
 * as a NIC would; over veth the run would otherwise stay one skb all the way to b.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { HostProc, tcpTransfer } from './harness.js';
import { startCapture } from '../helpers/capture.js';
import { l4ChecksumKind, ipv4VerifyChecksum } from '../../src/codec/index.js';

const MB = 1024 * 1024;

/** The Ethernet frames of a pcap file (link type 1). */
function pcapFrames(file: string): Buffer[] {
  const b = readFileSync(file);
  expect(b.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect(b.readUInt32LE(20)).toBe(1);
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length;) {
    const incl = b.readUInt32LE(o + 8);
    out.push(b.subarray(o + 16, o + 16 + incl));
    o += 16 + incl;
  }
  return out;
}

interface Datagram {
  frameLen: number;
  /** Header fields that must match between the two paths (no per-packet choices). */
  shape: string;
  seq: number;
  payload: Buffer;
  /** A SYN: its sequence number + 1 is where the byte stream starts. */
  syn: boolean;
}

/** Check one VXLAN frame to TCP port `port` and return its shape and inner TCP payload. */
function decode(f: Buffer, port: number): Datagram | undefined {
  expect(f.readUInt16BE(12)).toBe(0x0800);
  const ip = 14;
  const frag = f.readUInt16BE(ip + 6);
  expect(frag & 0x3fff, 'no outer IP fragments').toBe(0);
  expect(f.length, 'frame within the underlay MTU').toBeLessThanOrEqual(1514);
  const udp = ip + (f[ip]! & 15) * 4;
  const vx = udp + 8;
  const ie = vx + 8;
  const iip = ie + 14;
  if (f.readUInt16BE(ie + 12) !== 0x0800 || f[iip + 9] !== 6) return undefined;
  const itl = f.readUInt16BE(iip + 2);
  expect(ipv4VerifyChecksum(f, iip), 'inner IPv4 checksum').toBe(true);
  expect((f.readUInt16BE(iip + 6) & 0x3fff), 'no inner fragments').toBe(0);
  const tcp = iip + (f[iip]! & 15) * 4;
  if (f.readUInt16BE(tcp + 2) !== port) return undefined;
  expect(l4ChecksumKind(f, iip, itl), 'inner TCP checksum').toBe('full');
  const thl = (f[tcp + 12]! >> 4) * 4;
  const payload = f.subarray(tcp + thl, iip + itl);
  const shape = [
    f[ip], f[ip + 1], f.readUInt16BE(ip + 2), frag & 0x4000, f[ip + 8], f[ip + 9], // outer IPv4 (no ID)
    f.readUInt16BE(udp + 2), f.readUInt16BE(udp + 4), // UDP dst port and length (no source port)
    f.subarray(vx, vx + 8).toString('hex'), // VXLAN header
    f.readUInt16BE(ie + 12), f[iip], f[iip + 1], itl, f.readUInt16BE(iip + 6) & 0x4000, f[iip + 8], // inner IPv4 (no ID)
    thl, f[tcp + 13]! & 0x10, // TCP header length, ACK
  ].join(',');
  return { frameLen: f.length, shape, seq: f.readUInt32BE(tcp + 4), payload, syn: (f[tcp + 13]! & 2) !== 0 };
}

/** Reassemble a TCP byte stream from segments (by sequence number; retransmissions overlap). */
function reassemble(ds: Datagram[]): Buffer {
  const syn = ds.find((d) => d.syn);
  if (syn === undefined) throw new Error('capture has no SYN');
  const base = (syn.seq + 1) >>> 0;
  const segs = ds.filter((d) => d.payload.length > 0).sort((x, y) => (((x.seq - base) >>> 0) - ((y.seq - base) >>> 0)));
  const parts: Buffer[] = [];
  let next = 0;
  for (const s of segs) {
    const at = (s.seq - base) >>> 0;
    if (at > next) throw new Error(`capture has a gap at byte ${next} (next segment at ${at}, ${segs.length} segments)`);
    if (at + s.payload.length <= next) continue;
    parts.push(s.payload.subarray(next - at));
    next = at + s.payload.length;
  }
  return Buffer.concat(parts);
}

describe.runIf(requireNetns())('offloaded send path puts the same datagrams on the wire as the plain path', () => {
  const tb = new Testbed('vxw');
  const dir = mkdtempSync(join(tmpdir(), 'vxw-'));
  let a: NsHost, b: NsHost, c: NsHost, oa: HostProc, ob: HostProc, oc: HostProc;
  beforeAll(async () => {
    a = tb.host('a'); b = tb.host('b'); c = tb.host('c');
    tb.lan([{ host: a, dev: 'u0', cidr: '198.18.0.1/24' }, { host: b, dev: 'u0', cidr: '198.18.0.2/24' }, { host: c, dev: 'u0', cidr: '198.18.0.3/24' }]);
    const base = { kind: 'vxlan', mode: 'l3', network: '198.19.0.0/16', transport: 'mmsg' };
    oa = await HostProc.start(tb, a, { ...base, subnet: '198.19.1.0/24', publicIp: '198.18.0.1', offload: 'auto' });
    ob = await HostProc.start(tb, b, { ...base, subnet: '198.19.2.0/24', publicIp: '198.18.0.2', offload: 'off' });
    oc = await HostProc.start(tb, c, { ...base, subnet: '198.19.3.0/24', publicIp: '198.18.0.3', offload: 'off' });
    for (const [x, ys] of [[oa, [ob, oc]], [ob, [oa, oc]], [oc, [oa, ob]]] as const) for (const y of ys) await x.addPeer(y.lease);
    // Over veth a UDP GSO run crosses to the peer as one unsegmented skb (as a kernel VXLAN
    // sender's 64 KB super-packet does), so a capture would show it whole. A NIC segments it:
    // make a's veth segment in software before transmit, which is what a NIC puts on the wire.
    a.exec('ethtool', ['-K', 'u0', 'tx-udp-segmentation', 'off']);
  });
  afterAll(async () => {
    for (const o of [oa, ob, oc]) await o?.stop().catch(() => undefined);
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function capture(client: NsHost, port: number): Promise<{ ds: Datagram[]; sha: string }> {
    const cap = await startCapture(tb, b, 'u0', join(dir, `wire-${port}.pcap`), 'udp dst port 8472');
    const r = await tcpTransfer(tb, b, '198.19.2.0', client, 4 * MB, port, 60_000);
    expect(r.server.sha256).toBe(r.client.sha256);
    const file = await cap.stop();
    const ds = pcapFrames(file).map((f) => decode(f, port)).filter((d): d is Datagram => d !== undefined);
    return { ds, sha: r.client.sha256 };
  }

  it('checks both captures frame by frame and compares them', async () => {
    const off = await capture(a, 5101); // a: offloaded sender
    const plain = await capture(c, 5102); // c: plain sender
    const so = await oa.stats();
    expect((so.stats.offload as { superPackets: number }).superPackets, 'the offloaded sender did read super-packets').toBeGreaterThan(0);
    expect((so.stats.offload as { gsoSends: number }).gsoSends, 'and sent GSO runs').toBeGreaterThan(0);
    for (const [name, cap] of [['offloaded', off], ['plain', plain]] as const) {
      // every byte the application sent is on the wire, in valid datagrams
      const data = reassemble(cap.ds);
      if (data.length !== 4 * MB) { const syn = cap.ds.find((d) => d.syn)!; const tail = cap.ds.filter((d) => d.payload.length > 0).map((d) => [((d.seq - syn.seq - 1) >>> 0), d.payload.length, d.frameLen]).sort((x, y) => x[0]! - y[0]!).slice(-6); console.log(name, cap.ds.length, JSON.stringify(tail)); }
      expect(data.length, `${name}: reassembled length`).toBe(4 * MB);
      expect(createHash('sha256').update(data).digest('hex'), `${name}: reassembled payload`).toBe(cap.sha);
    }
    // full-size data datagrams: same length and the same header fields on both paths
    const full = (ds: Datagram[]): Datagram[] => {
      const max = Math.max(...ds.map((d) => d.frameLen));
      return ds.filter((d) => d.frameLen === max);
    };
    const fo = full(off.ds);
    const fp = full(plain.ds);
    expect(fo[0]!.frameLen).toBe(fp[0]!.frameLen);
    expect(fo.length).toBeGreaterThan(100);
    expect(new Set(fo.map((d) => d.shape))).toEqual(new Set(fp.map((d) => d.shape)));
    console.log(`wire: offloaded ${off.ds.length} datagrams (${fo.length} full-size, ${fo[0]!.frameLen} B frames); plain ${plain.ds.length} (${fp.length} full-size)`);
  });
});
