/**
 * An independent decoder checks our output: frames we encapsulate (IPv4 and IPv6
 * outer, with UDP checksums, GBP) and ICMP errors we build are written to a pcap and
 * read back with `tcpdump -vv`, which verifies the IP header and UDP/ICMP checksums
 * (including the IPv6 pseudo-header) and decodes the VXLAN header.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildIcmpFragNeeded, emitEthernet, emitIpv4, emitUdp, EtherType, IpProto, ipv4ToU32, parseIpv6, parseMac,
  vxlanEncapFull, vxlanTunnel, VXLAN_PORT_IANA,
} from '../../src/codec/index.js';
import { HEADROOM } from '../../src/tun/types.js';

function haveTcpdump(): boolean {
  try { execFileSync('tcpdump', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; }
}

/** Classic pcap, Ethernet link type (1) or raw IPv4 (228). */
function pcap(frames: Uint8Array[], linkType = 1): Buffer {
  const parts: Buffer[] = [];
  const gh = Buffer.alloc(24);
  gh.writeUInt32LE(0xa1b2c3d4, 0); gh.writeUInt16LE(2, 4); gh.writeUInt16LE(4, 6);
  gh.writeUInt32LE(65535, 16); gh.writeUInt32LE(linkType, 20);
  parts.push(gh);
  frames.forEach((f, i) => {
    const rh = Buffer.alloc(16);
    rh.writeUInt32LE(1_700_000_000 + i, 0); rh.writeUInt32LE(f.length, 8); rh.writeUInt32LE(f.length, 12);
    parts.push(rh, Buffer.from(f));
  });
  return Buffer.concat(parts);
}

function tcpdump(file: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'odtd-'));
  try {
    const p = join(dir, 'x.pcap');
    writeFileSync(p, file);
    return execFileSync('tcpdump', ['-r', p, '-n', '-vv', '-e'], { stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function inner(len: number, sport: number): { buf: Buffer; len: number } {
  const buf = Buffer.alloc(HEADROOM + len);
  emitEthernet(buf, HEADROOM, parseMac('0a:c6:13:02:00:00'), parseMac('0a:c6:13:01:00:00'), EtherType.IPv4);
  emitIpv4(buf, HEADROOM + 14, 0, len - 14, 7, 0x4000, 64, IpProto.UDP, ipv4ToU32('198.19.1.5'), ipv4ToU32('198.19.2.5'));
  emitUdp(buf, HEADROOM + 34, sport, 5201, len - 34);
  for (let i = HEADROOM + 42; i < buf.length; i++) buf[i] = i * 7;
  return { buf, len };
}

describe.runIf(haveTcpdump())('tcpdump decodes and verifies our output', () => {
  it('full-form VXLAN over IPv4 and IPv6 (UDP checksums, GBP)', () => {
    const frames: Uint8Array[] = [];
    const base = { srcMac: parseMac('02:00:c6:12:00:01'), dstMac: parseMac('02:00:c6:12:00:02'), dstPort: VXLAN_PORT_IANA, vni: 4242 };
    for (const [i, len] of [98, 1400, 1401, 61].entries()) {
      const a = inner(len, 1000 + i);
      const s = vxlanEncapFull(a.buf, HEADROOM, a.len, vxlanTunnel({ ...base, srcIp: ipv4ToU32('198.18.0.1'), dstIp: ipv4ToU32('198.18.0.2'), ipId: i, gbp: i === 3, gbpId: 0xbeef }));
      frames.push(a.buf.subarray(s));
      const b = inner(len, 2000 + i);
      const s6 = vxlanEncapFull(b.buf, HEADROOM, b.len, vxlanTunnel({ ...base, family: 6, src6: parseIpv6('2001:db8::1'), dst6: parseIpv6('2001:db8::2'), ttl: 17, flowLabel: 0x12345 }));
      frames.push(b.buf.subarray(s6));
    }
    const out = tcpdump(pcap(frames));
    const lines = out.split('\n');
    // Every outer UDP checksum verified by tcpdump; inner UDP checksums are zero (not checked).
    expect(out.match(/198\.18\.0\.1\.\d+ > 198\.18\.0\.2\.4789: \[udp sum ok\]/g)?.length).toBe(4);
    expect(out.match(/2001:db8::1\.\d+ > 2001:db8::2\.4789: \[udp sum ok\]/g)?.length).toBe(4);
    expect(out).not.toMatch(/bad (udp )?cksum|bad-len|truncated/i);
    expect(out.match(/VXLAN, flags \[I\] \(0x08\), vni 4242/g)?.length).toBe(7);
    expect(out).toMatch(/hlim 17/);
    expect(out).toMatch(/flowlabel 0x12345/);
    expect(out.match(/198\.19\.1\.5\.100\d > 198\.19\.2\.5\.5201/g)?.length).toBe(4);
    expect(lines.filter((l) => l.includes('02:00:c6:12:00:01 > 02:00:c6:12:00:02')).length).toBe(8);
  });

  it('ICMP fragmentation-needed built into a slot', () => {
    const pkt = new Uint8Array(1500);
    emitIpv4(pkt, 0, 0, 1500, 9, 0x4000, 63, IpProto.UDP, ipv4ToU32('198.19.1.5'), ipv4ToU32('198.19.2.5'));
    emitUdp(pkt, 20, 4000, 5201, 1480);
    const slot = new Uint8Array(HEADROOM + 128);
    const n = buildIcmpFragNeeded(slot, HEADROOM, pkt, 0, 1500, ipv4ToU32('198.19.1.0'), 1450);
    const out = tcpdump(pcap([slot.subarray(HEADROOM, HEADROOM + n)], 228));
    expect(out).toMatch(/198\.19\.1\.0 > 198\.19\.1\.5: ICMP 198\.19\.2\.5 unreachable - need to frag \(mtu 1450\)/);
    expect(out).not.toMatch(/wrong icmp cksum|bad cksum/i);
  });
});
