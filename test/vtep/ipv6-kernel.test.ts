/**
 * Interop over an IPv6 underlay (2001:2:0:1::/64 inside the test namespaces), inner IPv4:
 *  - our L3 VTEP against the Linux kernel's VXLAN device configured as flannel configures
 *    flannel-v6.1 (`local <IPv6> dstport 8472 nolearning`, its route, neighbour and FDB entry):
 *    pings up to the MTU (1430) both ways, 50 MB SHA-256-checked TCP both ways, a flood of
 *    hostile IPv6 datagrams during a transfer, and the UDP checksum rules of RFC 6935/6936 as the
 *    kernel applies them (a real checksum on every datagram we send; a zero one is dropped);
 *  - the UDP backend over IPv6 between three hosts (MTU 1452).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { startCapture } from '../helpers/capture.js';
import { A6, B6, floodVtep, HostProc, kernelAddPeer, kernelVxlan, ping, tcpTransfer, v6Pair } from './harness.js';
import { expectArpAndPings } from './l2-checks.js';
import { readPcap } from '../codec/pcap-read.js';
import { ETH_HLEN, udpVerify6 } from '../../src/codec/index.js';

const MB = 1024 * 1024;

/** Run `python3 -c code` in host `h` (raw IPv6 sockets for the checksum test). */
function py(h: NsHost, code: string, ...args: string[]): string {
  return h.exec('python3', ['-c', code, ...args]);
}

/** Raw IPv6/UDP datagram to `dst`:8472 from `src`, VXLAN VNI 1 + Ethernet + IPv4 ICMP echo; argv[3] 'zero' sends a zero UDP checksum, else a correct one. */
const RAW_VXLAN6 = String.raw`
import socket, struct, sys
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
icmp = bytearray(struct.pack('!BBHHH', 8, 0, 0, 0x77, 1) + b'x' * 32)
icmp[2:4] = struct.pack('!H', csum(bytes(icmp)))
ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, socket.inet_aton('198.19.2.0'), socket.inet_aton('198.19.1.0')))
ip[10:12] = struct.pack('!H', csum(bytes(ip)))
eth = bytes.fromhex('020000000101' + '020000000202' + '0800')
payload = bytes.fromhex('0800000000000100') + eth + bytes(ip) + bytes(icmp)
ulen = 8 + len(payload)
udp = bytearray(struct.pack('!HHHH', 40000, 8472, ulen, 0) + payload)
if mode != 'zero':
    pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack('!I3xB', ulen, 17)
    c = csum(pseudo + bytes(udp))
    udp[6:8] = struct.pack('!H', c or 0xffff)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.bind((src, 0))
s.sendto(bytes(udp), (dst, 0))
`;

/** Udp6InCsumErrors of host `h` (/proc/net/snmp6). */
function udp6CsumErrors(h: NsHost): number {
  const m = /Udp6InCsumErrors\s+(\d+)/.exec(h.exec('cat', ['/proc/net/snmp6']));
  return Number(m?.[1] ?? -1);
}

/**
 * Our VTEP (`mode`) on a, a kernel flannel-v6.1 on b, each the other's peer, for one describe block.
 * L2, as in l2.test.ts: TX offload off on the kernel side (a TAP takes no 64 KB super-packets), no
 * permanent neighbour there (ARP crosses the tunnel), the kernel floods through the all-zeros entry.
 */
function oursAndKernel6(tb: Testbed, mode: 'l3' | 'l2'): { a: () => NsHost; b: () => NsHost; ours: () => HostProc } {
  let a: NsHost, b: NsHost, ours: HostProc;
  beforeAll(async () => {
    [a, b] = v6Pair(tb);
    ours = await HostProc.start(tb, a, {
      kind: 'vxlan', mode, subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: A6,
      vtepMac: '02:00:00:00:01:01', transport: 'mmsg',
    });
    const k = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: B6, underlay: 'u0', mac: '02:00:00:00:02:02', txOff: mode === 'l2' });
    await ours.addPeer(k.lease);
    kernelAddPeer(b, k.dev, ours.lease, { neigh: mode === 'l3' });
    if (mode === 'l2') b.exec('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', k.dev, 'dst', A6]);
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });
  return { a: () => a, b: () => b, ours: () => ours };
}

describe.runIf(requireNetns())('L3 VTEP <-> kernel flannel-v6.1 over an IPv6 underlay (mmsg)', () => {
  const tb = new Testbed('vx6k');
  const t = oursAndKernel6(tb, 'l3');
  let a: NsHost, b: NsHost, ours: HostProc;
  beforeAll(() => { a = t.a(); b = t.b(); ours = t.ours(); });

  it('is flannel-v6.1 with MTU 1430, an IPv6 source-port pool, and the kernel device as flannel sets it up', async () => {
    expect(ours.lease.publicIp).toBe(A6);
    const ports = (await ours.stats()).stats.sourcePorts as number[];
    expect(ports).toHaveLength(16);
    const udp6 = a.exec('ss', ['-6uan']);
    for (const p of ports) expect(udp6).toContain(`:${p} `); // ephemeral ports on IPv6 sockets
    expect(udp6).toContain(':8472 '); // ss -6: our IPv6 socket on :: (shown as *)
    expect(a.ip('link', 'show', 'flannel-v6.1')).toMatch(/mtu 1430/);
    expect(b.ip('-d', 'link', 'show', 'flannel-v6.1')).toMatch(new RegExp(`vxlan id 1 local ${B6} dev u0 .*dstport 8472 nolearning`));
    expect(b.exec('bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).toContain(`02:00:00:00:01:01 dst ${A6} self permanent`);
  });

  it('pings both ways at sizes up to the MTU (1430)', () => {
    for (const size of [56, 1000, 1402]) {
      expect(ping(a, '198.19.2.0', size), `ours -> kernel, ${size}`).toBe(true);
      expect(ping(b, '198.19.1.0', size), `kernel -> ours, ${size}`).toBe(true);
    }
    expect(ping(a, '198.19.2.0', 1403)).toBe(false); // over the MTU with DF
  });

  it('moves 50 MB over TCP ours -> kernel with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, b, '198.19.2.0', a, 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = await ours.stats();
    console.log(`vxlan over IPv6: 50 MB ours->kernel in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s); drops ${JSON.stringify(s.stats.drops)}; offload ${JSON.stringify(s.stats.offload)}`);
    expect(s.stats.peers[B6]!.txPackets).toBeGreaterThan(10_000);
    expect(s.stats.offload!.gsoSends).toBeGreaterThan(0); // UDP GSO to the IPv6 peer
  });

  it('moves 50 MB over TCP kernel -> ours with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, a, '198.19.1.0', b, 50 * MB, 5002);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = await ours.stats();
    console.log(`vxlan over IPv6: 50 MB kernel->ours in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s)`);
    expect(s.stats.peers[B6]!.rxPackets).toBeGreaterThan(1000);
  });

  it('sends a real UDP checksum on every datagram; a zero checksum is dropped by the kernel before us (RFC 6935/6936)', async () => {
    // our datagrams, captured where b receives them: with a's TX checksum offload off, the
    // checksum the socket layer computed is on the wire (with it on, veth carries the partial seed)
    a.exec('ethtool', ['-K', 'u0', 'tx', 'off']);
    const dir = mkdtempSync(join(tmpdir(), 'vx6csum-'));
    try {
      const cap = await startCapture(tb, b, 'u0', join(dir, 'c.pcap'), `ip6 and udp and dst port 8472 and src host ${A6}`);
      expect(ping(a, '198.19.2.0', 56, 3)).toBe(true);
      expect(ping(a, '198.19.2.0', 1402, 2)).toBe(true);
      const recs = readPcap(readFileSync(await cap.stop())).records;
      expect(recs.length).toBeGreaterThanOrEqual(5);
      for (const r of recs) {
        const u = ETH_HLEN + 40;
        expect(r.data.readUInt16BE(u + 6)).not.toBe(0);
        expect(udpVerify6(r.data, u, r.data, ETH_HLEN + 8, ETH_HLEN + 24)).toBe(true);
      }
    } finally {
      a.exec('ethtool', ['-K', 'u0', 'tx', 'on']);
      rmSync(dir, { recursive: true, force: true });
    }
    // a datagram with a zero checksum never reaches us; the same with a correct one does
    const rx0 = (await ours.stats()).stats.rxPackets;
    const err0 = udp6CsumErrors(a);
    py(b, RAW_VXLAN6, B6, A6, 'zero');
    await new Promise((r) => setTimeout(r, 300));
    expect(udp6CsumErrors(a)).toBe(err0 + 1);
    expect((await ours.stats()).stats.rxPackets).toBe(rx0);
    py(b, RAW_VXLAN6, B6, A6, 'good');
    await new Promise((r) => setTimeout(r, 300));
    expect(udp6CsumErrors(a)).toBe(err0 + 1);
    expect((await ours.stats()).stats.rxPackets).toBe(rx0 + 1);
  });

  it('completes a transfer intact while flooded with hostile IPv6 datagrams; drops counted by reason', async () => {
    b.ip('addr', 'add', '2001:2:0:1::99/64', 'dev', 'u0', 'nodad'); // the attacker's (unknown) source address
    const before = (await ours.stats()).stats.drops;
    const xfer = tcpTransfer(tb, a, '198.19.1.0', b, 20 * MB, 5012, 120_000);
    const floods = Promise.all([floodVtep(tb, b, A6, B6, 4000), floodVtep(tb, b, A6, '2001:2:0:1::99', 4000)]);
    const [r, sent] = await Promise.all([xfer, floods]);
    expect(r.server.bytes).toBe(20 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const d = (await ours.stats()).stats.drops;
    console.log(`vxlan over IPv6 under attack: ${sent.join('+')} datagrams; drops ${JSON.stringify(d)}`);
    for (const reason of ['rx_unknown_peer', 'rx_truncated', 'rx_bad_vxlan_flags', 'rx_wrong_vni', 'rx_spoofed_inner_source']) {
      expect((d[reason] ?? 0) - (before[reason] ?? 0), reason).toBeGreaterThan(0);
    }
  });
});

describe.runIf(requireNetns())('L2 VTEP (TAP) <-> kernel flannel-v6.1 over an IPv6 underlay (mmsg)', () => {
  const tb = new Testbed('vx6l');
  const t = oursAndKernel6(tb, 'l2');
  it('resolves ARP through the tunnel both ways, pings up to the MTU (1430) and moves 20 MB intact', async () => {
    expectArpAndPings(t.a(), t.b(), 'flannel-v6.1', [1000, 1402]);
    const r = await tcpTransfer(tb, t.b(), '198.19.2.0', t.a(), 20 * MB, 5201);
    expect(r.server.sha256).toBe(r.client.sha256);
    expect(r.server.bytes).toBe(20 * MB);
    const s = (await t.ours().stats()).stats;
    expect(Number(s.floods)).toBeGreaterThan(0); // the ARP request(s), head-end replicated to the IPv6 peer
  });
});

describe.runIf(requireNetns())('UDP backend over an IPv6 underlay, three hosts (mmsg)', () => {
  const tb = new Testbed('ud6');
  const ips = ['2001:2:0:1::1', '2001:2:0:1::2', '2001:2:0:1::3'];
  let h: NsHost[] = [];
  let procs: HostProc[] = [];
  beforeAll(async () => {
    h = ['a', 'b', 'c'].map((n) => tb.host(n));
    tb.lan(h.map((host, i) => ({ host, dev: 'u0', cidr: `198.18.0.${i + 1}/24` })));
    h.forEach((host, i) => host.ip('addr', 'add', `${ips[i]}/64`, 'dev', 'u0', 'nodad'));
    for (let i = 0; i < 3; i++) {
      procs.push(await HostProc.start(tb, h[i]!, { kind: 'udp', network: '198.19.0.0/16', subnet: `198.19.${i + 1}.0/24`, publicIp: ips[i], transport: 'mmsg' }));
    }
    for (const p of procs) for (const q of procs) if (p !== q) await p.addPeer(q.lease);
  });
  afterAll(async () => {
    for (const p of procs) await p.stop().catch(() => undefined);
    procs = [];
    tb.destroy();
  });

  it('configures flannel0 with MTU 1452 (underlay - 48)', () => {
    expect(h[0]!.ip('link', 'show', 'flannel0')).toMatch(/mtu 1452/);
  });

  it('pings every pair at sizes up to the MTU', () => {
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        if (i === j) continue;
        for (const size of [56, 1424]) expect(ping(h[i]!, `198.19.${j + 1}.0`, size), `${i}->${j} ${size}`).toBe(true);
      }
    }
    expect(ping(h[0]!, '198.19.2.0', 1425)).toBe(false);
  });

  it('moves 50 MB over TCP both ways between two hosts with matching SHA-256', async () => {
    const r1 = await tcpTransfer(tb, h[1]!, '198.19.2.0', h[0]!, 50 * MB, 5101);
    expect(r1.server.bytes).toBe(50 * MB);
    expect(r1.server.sha256).toBe(r1.client.sha256);
    const r2 = await tcpTransfer(tb, h[0]!, '198.19.1.0', h[2]!, 50 * MB, 5102);
    expect(r2.server.bytes).toBe(50 * MB);
    expect(r2.server.sha256).toBe(r2.client.sha256);
    const s = (await procs[0]!.stats()).stats;
    console.log(`udp over IPv6: 50 MB a->b ${r1.ms} ms, c->a ${r2.ms} ms; drops ${JSON.stringify(s.drops)}; offload ${JSON.stringify(s.offload)}`);
    // ours on both ends: the sender's UDP GSO runs arrive as UDP GRO messages on the IPv6 socket
    expect(s.offload!.gsoSends).toBeGreaterThan(0);
    expect(s.offload!.groMessages).toBeGreaterThan(0);
    expect(s.peers[ips[1]!]!.txPackets).toBeGreaterThan(10_000);
    expect(s.peers[ips[2]!]!.rxPackets).toBeGreaterThan(10_000);
  });
});
