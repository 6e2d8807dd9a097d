import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapWriter } from '../../src/overlayd/index.js';

const dir = mkdtempSync(join(tmpdir(), 'od-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ip = (s: string): number => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** An ICMP echo request 198.19.1.1 -> 198.19.2.1 (IPv4 header checksum filled in). */
function icmpEcho(): Buffer {
  const b = Buffer.alloc(28 + 8);
  b.writeUInt8(0x45, 0); b.writeUInt16BE(b.length, 2); b.writeUInt8(64, 8); b.writeUInt8(1, 9);
  b.writeUInt32BE(ip('198.19.1.1'), 12); b.writeUInt32BE(ip('198.19.2.1'), 16);
  let s = 0; for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i); while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b.writeUInt16BE(~s & 0xffff, 10);
  b.writeUInt8(8, 20); b.writeUInt16BE(0x1234, 24); b.writeUInt16BE(1, 26);
  let c = 0; for (let i = 20; i < b.length; i += 2) c += b.readUInt16BE(i); while (c > 0xffff) c = (c & 0xffff) + (c >>> 16);
  b.writeUInt16BE(~c & 0xffff, 22);
  return b;
}

function haveTcpdump(): boolean {
  try { execFileSync('tcpdump', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; }
}

describe('pcap writer', () => {
  it('classic pcap: header, inner packet as is, outer datagram with synthesized IPv4/UDP header', () => {
    const path = join(dir, 'a.pcap');
    const w = new PcapWriter(path, { flushMs: 0, nowMicros: () => 1_700_000_000_123_456 });
    const pkt = icmpEcho();
    const framed = Buffer.concat([Buffer.alloc(10, 0xee), pkt]);
    w.inner('out', framed, 10, pkt.length);
    w.outer('out', framed, 10, pkt.length, ip('198.18.0.1'), 8285, ip('198.18.0.2'), 8285);
    w.close();
    w.inner('in', pkt, 0, pkt.length); // after close: counted, not written
    expect(w.packets).toBe(2);
    expect(w.dropped).toBe(1);
    const f = readFileSync(path);
    expect(f.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(f.readUInt32LE(20)).toBe(101); // LINKTYPE_RAW
    // record 1
    expect(f.readUInt32LE(24)).toBe(1_700_000_000);
    expect(f.readUInt32LE(28)).toBe(123_456);
    expect(f.readUInt32LE(32)).toBe(pkt.length);
    expect(f.subarray(40, 40 + pkt.length).equals(pkt)).toBe(true);
    // record 2: 28 synthesized bytes + payload
    const r2 = 40 + pkt.length;
    expect(f.readUInt32LE(r2 + 8)).toBe(pkt.length + 28);
    const o = r2 + 16;
    expect(f.readUInt8(o + 9)).toBe(17);
    expect(f.readUInt32BE(o + 12)).toBe(ip('198.18.0.1'));
    expect(f.readUInt32BE(o + 16)).toBe(ip('198.18.0.2'));
    expect(f.readUInt16BE(o + 22)).toBe(8285);
    expect(f.readUInt16BE(o + 24)).toBe(pkt.length + 8);
    expect(f.subarray(o + 28, o + 28 + pkt.length).equals(pkt)).toBe(true);
    expect(f.length).toBe(o + 28 + pkt.length);
  });

  it.runIf(haveTcpdump())('tcpdump reads both the pcap and the pcapng file (inner ICMP, outer UDP, direction)', () => {
    for (const name of ['b.pcap', 'b.pcapng']) {
      const path = join(dir, name);
      const w = new PcapWriter(path, { flushMs: 0, bufferBytes: 200 }); // small buffer: forces mid-stream flushes
      const pkt = icmpEcho();
      for (let i = 0; i < 5; i++) {
        w.inner('out', pkt, 0, pkt.length);
        w.outer('out', pkt, 0, pkt.length, ip('198.18.0.1'), 40000, ip('198.18.0.2'), 8285);
        w.outer('in', pkt, 0, pkt.length, ip('198.18.0.1'), 8285, ip('198.18.0.2'), 40000);
      }
      w.close();
      const out = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
      const lines = out.trim().split('\n');
      expect(lines).toHaveLength(15);
      expect(lines[0]).toMatch(/198\.19\.1\.1 > 198\.19\.2\.1: ICMP echo request/);
      expect(lines[1]).toMatch(/198\.18\.0\.1\.40000 > 198\.18\.0\.2\.8285: UDP, length 36/);
      expect(lines[2]).toMatch(/198\.18\.0\.2\.40000 > 198\.18\.0\.1\.8285: UDP, length 36/);
      if (name.endsWith('.pcapng')) {
        // Walk the blocks: 2 IDBs named overlay/underlay, 15 EPBs, 5 of them inbound (epb_flags 1) on interface 1.
        const f = readFileSync(path);
        const names: string[] = [];
        const epbs: { iface: number; flags: number }[] = [];
        for (let o = 0; o < f.length; o += f.readUInt32LE(o + 4)) {
          const type = f.readUInt32LE(o);
          if (type === 1) names.push(f.toString('utf8', o + 20, o + 20 + f.readUInt16LE(o + 18)));
          if (type === 6) {
            const cap = f.readUInt32LE(o + 20);
            const opt = o + 28 + ((cap + 3) & ~3);
            expect(f.readUInt16LE(opt)).toBe(2);
            epbs.push({ iface: f.readUInt32LE(o + 8), flags: f.readUInt32LE(opt + 4) });
          }
        }
        expect(names).toEqual(['overlay', 'underlay']);
        expect(epbs).toHaveLength(15);
        expect(epbs.filter((e) => e.flags === 1).every((e) => e.iface === 1)).toBe(true);
        expect(epbs.filter((e) => e.flags === 1)).toHaveLength(5);
      }
    }
  });
});
