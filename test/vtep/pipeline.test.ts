/** Pipeline unit tests of both dataplanes over in-memory devices and transports. */
import { describe, expect, it } from 'vitest';
import { UdpBackend, VxlanBackend } from '../../src/vtep/index.js';
import { ipv4ToU32 } from '../../src/codec/addr.js';
import { FakeIo, csum, ipv4Packet, nullKernel } from './fakes.js';

const PEER = ipv4ToU32('198.18.0.2');
const PEER_MAC = '02:00:00:00:00:02';

async function udp() {
  const io = new FakeIo();
  const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel });
  await b.start();
  b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' });
  return { b, dev: io.dev!, tr: io.tr! };
}

describe('UdpBackend pipeline', () => {
  it('sends bare IPv4 to the peer with TTL decremented and a valid checksum', async () => {
    const { b, dev, tr } = await udp();
    dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7', { ttl: 64 })]);
    expect(tr.sent).toHaveLength(1);
    const d = tr.sent[0]!;
    expect(d.addr).toBe(PEER);
    expect(d.port).toBe(8285);
    expect(d.data[8]).toBe(63);
    expect(csum(d.data.subarray(0, 20))).toBe(0);
    expect(b.stats().peers['198.18.0.2']!.txPackets).toBe(1);
  });

  it('answers no-route, TTL expiry and DF over-MTU with ICMP into the TUN', async () => {
    const { b, dev, tr } = await udp();
    dev.inject([
      ipv4Packet('198.19.1.5', '198.19.9.9'),
      ipv4Packet('198.19.1.5', '198.19.2.7', { ttl: 1 }),
      ipv4Packet('198.19.1.5', '198.19.2.7', { df: true, payload: 1500 }),
      ipv4Packet('198.19.1.5', '198.19.9.9', { fragOff: 10 }), // non-first fragment: no ICMP
    ]);
    expect(tr.sent).toHaveLength(0);
    expect(dev.written).toHaveLength(3);
    const [u, t, f] = dev.written as [Buffer, Buffer, Buffer];
    expect([u[20], u[21]]).toEqual([3, 0]);
    expect([t[20], t[21]]).toEqual([11, 0]);
    expect([f[20], f[21], f.readUInt16BE(26)]).toEqual([3, 4, 1472]);
    for (const p of [u, t, f]) {
      expect(csum(p.subarray(0, 20))).toBe(0);
      expect(csum(p.subarray(20))).toBe(0);
      expect(p.readUInt32BE(16)).toBe(ipv4ToU32('198.19.1.5'));
    }
    expect(b.stats().drops).toEqual({ tx_no_route: 2, tx_ttl_exceeded: 1, tx_too_big: 1 });
  });

  it('accepts only valid IPv4 from known peers to our subnet', async () => {
    const { b, dev, tr } = await udp();
    const bad = ipv4Packet('198.19.2.7', '198.19.1.5'); bad[10]! ^= 1;
    tr.inject([
      { addr: PEER, data: ipv4Packet('198.19.2.7', '198.19.1.5') },
      { addr: ipv4ToU32('198.18.0.66'), data: ipv4Packet('198.19.2.7', '198.19.1.5') },
      { addr: PEER, data: bad },
      { addr: PEER, data: Buffer.alloc(7) },
      { addr: PEER, data: ipv4Packet('198.19.2.7', '198.19.3.5') },
      { addr: PEER, data: ipv4Packet('198.19.3.7', '198.19.1.5') },
    ]);
    expect(dev.written).toHaveLength(1);
    expect(b.stats().drops).toEqual({ rx_unknown_peer: 1, rx_bad_ipv4: 1, rx_truncated: 1, rx_not_our_subnet: 1, rx_spoofed_inner_source: 1 });
    expect(b.stats().rxPackets).toBe(1);
  });

  it('checks every datagram of a GRO message: later ones that differ from the first are still dropped by reason', async () => {
    const { b, dev, tr } = await udp();
    const ok = (i: number) => { const p = ipv4Packet('198.19.2.7', '198.19.1.5'); p[24] = i; return p; };
    const bad = ok(2); bad[10]! ^= 1;
    const cut = ok(3); cut.writeUInt16BE(60, 2); cut.writeUInt16BE(0, 10); cut.writeUInt16BE(csum(cut.subarray(0, 20)), 10);
    const msg = [ok(0), ok(1), bad, cut, ipv4Packet('198.19.2.7', '198.19.3.5'), ipv4Packet('198.19.3.7', '198.19.1.5'), ok(6)];
    tr.inject([{ addr: PEER, data: Buffer.concat(msg), segSize: msg[0]!.length }]);
    expect(dev.written.map((w) => w[24])).toEqual([0, 1, 6]);
    expect(b.stats().drops).toEqual({ rx_bad_ipv4: 1, rx_truncated: 1, rx_not_our_subnet: 1, rx_spoofed_inner_source: 1 });
    // a message whose first datagram is dropped: the next ones are checked in full
    tr.inject([{ addr: PEER, data: Buffer.concat([ipv4Packet('198.19.3.7', '198.19.1.5'), ipv4Packet('198.19.3.7', '198.19.1.5'), ok(9)]), segSize: 52 }]);
    expect(dev.written.map((w) => w[24])).toEqual([0, 1, 6, 9]);
    expect(b.stats().drops.rx_spoofed_inner_source).toBe(3);
    expect(b.stats().rxPackets).toBe(4);
  });
});

async function vx(mode: 'l3' | 'l2', extra: Record<string, unknown> = {}) {
  const io = new FakeIo();
  const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel, mode, ...extra });
  await b.start();
  b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC });
  return { b, dev: io.dev!, tr: io.tr! };
}

function vxlanFrame(vni: number, dmac: string, smac: string, ethertype: number, payload: Buffer, flags = 0x08): Buffer {
  const h = Buffer.alloc(22);
  h[0] = flags; h.writeUIntBE(vni, 4, 3);
  Buffer.from(dmac.split(':').map((x) => parseInt(x, 16))).copy(h, 8);
  Buffer.from(smac.split(':').map((x) => parseInt(x, 16))).copy(h, 14);
  h.writeUInt16BE(ethertype, 20);
  return Buffer.concat([h, payload]);
}

describe('VxlanBackend L3 pipeline', () => {
  it('learning (net-conf Learning): a sender without a lease is accepted from the overlay network and its MAC learned; without learning it is dropped', async () => {
    const stranger = ipv4ToU32('198.18.0.9');
    const frame = (src: string, smac = '02:00:00:00:00:09') => vxlanFrame(1, '02:00:00:00:00:01', smac, 0x0800, ipv4Packet(src, '198.19.1.5'));
    const off = await vx('l3');
    off.tr.inject([{ addr: stranger, data: frame('198.19.9.5') }]);
    expect(off.dev.written).toHaveLength(0);
    expect(off.b.stats().drops).toEqual({ rx_unknown_peer: 1 });
    const on = await vx('l3', { learning: true });
    on.tr.inject([
      { addr: stranger, data: frame('198.19.9.5') }, // accepted
      { addr: stranger, data: frame('198.18.7.7') }, // inner source outside the overlay network
      { addr: stranger, data: frame('198.19.1.7') }, // inner source in our own subnet
      { addr: PEER, data: frame('198.19.9.6', PEER_MAC) }, // a leased peer is still held to its subnet
    ]);
    expect(on.dev.written).toHaveLength(1);
    expect(on.b.stats().drops).toEqual({ rx_spoofed_inner_source: 3 });
    expect(on.b.fdbEntries()['02:00:00:00:00:09']).toEqual(['198.18.0.9']);
    expect(on.b.fdbEntries()[PEER_MAC]).toEqual(['198.18.0.2']); // the lease's entry is never moved
  });

  it('encapsulates route -> neighbour -> FDB with the inner Ethernet header', async () => {
    const { dev, tr } = await vx('l3');
    const p = ipv4Packet('198.19.1.0', '198.19.2.0');
    dev.inject([p]);
    expect(tr.sent).toHaveLength(1);
    const d = tr.sent[0]!;
    expect(d.addr).toBe(PEER);
    expect(d.port).toBe(8472);
    expect(d.data.subarray(0, 8).toString('hex')).toBe('0800000000000100');
    expect(d.data.subarray(8, 22).toString('hex')).toBe('020000000002' + '020000000001' + '0800');
    expect(d.data.subarray(22).equals(p)).toBe(true);
  });

  it('writes the GBP header (G flag + policy) and accepts G-flagged frames only with GBP on', async () => {
    const { dev, tr } = await vx('l3', { gbp: true, gbpPolicy: 0x1234, vni: 4242 });
    dev.inject([ipv4Packet('198.19.1.0', '198.19.2.0')]);
    expect(tr.sent[0]!.data.subarray(0, 8).toString('hex')).toBe('8800123400109200');
    const p = ipv4Packet('198.19.2.0', '198.19.1.0');
    const f = vxlanFrame(4242, '02:00:00:00:00:01', PEER_MAC, 0x0800, p, 0x88);
    f.writeUInt16BE(0x0042, 2);
    tr.inject([{ addr: PEER, data: f }]);
    expect(dev.written).toHaveLength(1);
  });

  it('checks every datagram of a GRO message: later ones that differ from the first are still dropped by reason', async () => {
    const { b, dev, tr } = await vx('l3');
    const MAC = '02:00:00:00:00:01';
    const inner = (i: number, src = '198.19.2.7', dst = '198.19.1.5') => { const p = ipv4Packet(src, dst); p[24] = i; return p; };
    const frame = (p: Buffer, vni = 1, dmac = MAC, flags = 0x08) => vxlanFrame(vni, dmac, PEER_MAC, 0x0800, p, flags);
    const badSum = inner(2); badSum[10]! ^= 1;
    const msg = [
      frame(inner(0)), frame(inner(1)), frame(badSum), frame(inner(3), 2), frame(inner(4), 1, '02:00:00:00:00:07'),
      frame(inner(5), 1, MAC, 0x0c), frame(inner(6, '198.19.3.7')), frame(inner(7, '198.19.2.7', '198.19.3.5')),
      vxlanFrame(1, MAC, PEER_MAC, 0x86dd, inner(8)), frame(inner(9)),
    ];
    tr.inject([{ addr: PEER, data: Buffer.concat(msg), segSize: msg[0]!.length }]);
    expect(dev.written.map((w) => w[24])).toEqual([0, 1, 9]);
    expect(b.stats().drops).toEqual({
      rx_bad_ipv4: 1, rx_wrong_vni: 1, rx_not_our_mac: 1, rx_bad_vxlan_flags: 1, rx_spoofed_inner_source: 1, rx_not_our_subnet: 1,
      rx_unsupported_ethertype: 1,
    });
    expect(b.stats().rxPackets).toBe(3);
  });

  it('decapsulates, validates, and answers ARP for our VTEP address', async () => {
    const { b, dev, tr } = await vx('l3');
    const p = ipv4Packet('198.19.2.0', '198.19.1.0');
    const arp = Buffer.alloc(28);
    arp.writeUInt16BE(1, 0); arp.writeUInt16BE(0x0800, 2); arp[4] = 6; arp[5] = 4; arp.writeUInt16BE(1, 6);
    Buffer.from([2, 0, 0, 0, 0, 2]).copy(arp, 8); Buffer.from([198, 19, 2, 0]).copy(arp, 14); Buffer.from([198, 19, 1, 0]).copy(arp, 24);
    tr.inject([
      { addr: PEER, data: vxlanFrame(1, '02:00:00:00:00:01', PEER_MAC, 0x0800, p) },
      { addr: PEER, data: vxlanFrame(2, '02:00:00:00:00:01', PEER_MAC, 0x0800, p) },
      { addr: PEER, data: vxlanFrame(1, '02:00:00:00:00:01', PEER_MAC, 0x0800, p, 0x0c) },
      { addr: PEER, data: vxlanFrame(1, '02:00:00:00:00:99', PEER_MAC, 0x0800, p) },
      { addr: PEER, data: vxlanFrame(1, 'ff:ff:ff:ff:ff:ff', PEER_MAC, 0x0806, arp) },
      { addr: ipv4ToU32('198.18.0.9'), data: vxlanFrame(1, '02:00:00:00:00:01', PEER_MAC, 0x0800, p) },
    ]);
    expect(dev.written).toHaveLength(1);
    expect(dev.written[0]!.equals(p)).toBe(true);
    expect(tr.sent).toHaveLength(1);
    const r = tr.sent[0]!.data;
    expect(r.subarray(8, 14).toString('hex')).toBe('020000000002');
    expect(r.readUInt16BE(22 + 6)).toBe(2);
    expect(r.subarray(22 + 14, 22 + 18).toString('hex')).toBe('c6130100');
    expect(b.stats().drops).toEqual({ rx_wrong_vni: 1, rx_bad_vxlan_flags: 1, rx_not_our_mac: 1, rx_unknown_peer: 1 });
  });
});

describe('VxlanBackend known senders follow peer changes', () => {
  const frame = (src: string): Buffer => vxlanFrame(1, '02:00:00:00:00:01', PEER_MAC, 0x0800, ipv4Packet(src, '198.19.1.0'));
  it('2000 peers added, 1000 removed, one moved to another public IP: exactly the current public IPs are accepted, each for its own subnets', async () => {
    const { b, dev, tr } = await vx('l3');
    const ip = (i: number): string => `198.18.${8 + (i >> 8)}.${i & 255}`;
    const sub = (i: number): string => `198.19.${100 + (i >> 6)}.${(i & 63) * 4}/30`;
    for (let i = 0; i < 2000; i++) b.addPeer({ subnet: sub(i), publicIp: ip(i), backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC });
    for (let i = 0; i < 2000; i += 2) b.removePeer(sub(i));
    b.addPeer({ subnet: sub(1), publicIp: ip(3), backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC }); // .1's lease now at .3's IP
    const src = (i: number): string => sub(i).replace(/\d+\/30$/, (m) => String(Number(m.split('/')[0]) + 1));
    tr.inject([
      { addr: ipv4ToU32(ip(3)), data: frame(src(3)) }, // accepted
      { addr: ipv4ToU32(ip(3)), data: frame(src(1)) }, // accepted: .3's IP owns sub(1) now
      { addr: ipv4ToU32(ip(1)), data: frame(src(1)) }, // .1's IP has no lease left
      { addr: ipv4ToU32(ip(4)), data: frame(src(4)) }, // removed
      { addr: ipv4ToU32(ip(5)), data: frame(src(7)) }, // known sender, another's subnet
    ]);
    expect(dev.written).toHaveLength(2);
    expect(b.stats().drops).toEqual({ rx_unknown_peer: 2, rx_spoofed_inner_source: 1 });
  });
  it('a destination set by setFdb is known (sends and receives), and stays known after the last lease on it goes', async () => {
    const { b, tr } = await vx('l3');
    b.setFdb('02:00:00:00:00:77', ['198.18.0.77']);
    b.addPeer({ subnet: '198.19.77.0/24', publicIp: '198.18.0.77', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:77' });
    b.removePeer('198.19.77.0/24');
    tr.inject([{ addr: ipv4ToU32('198.18.0.77'), data: frame('198.19.2.5') }]);
    expect(b.stats().drops).toEqual({ rx_spoofed_inner_source: 1 }); // known (not rx_unknown_peer), owns no subnet
  });
});

describe('VxlanBackend L2 pipeline', () => {
  it('floods broadcast to all-zeros entries, unicast by FDB, learns, proxies ARP', async () => {
    const misses: string[] = [];
    const { b, dev, tr } = await vx('l2', { learning: true, proxyArp: true, onMiss: (e: { type: string }) => misses.push(e.type) });
    b.addPeer({ subnet: '198.19.3.0/24', publicIp: '198.18.0.3', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:03' });
    const eth = (d: string, s: string, t: number, body: Buffer) => vxlanFrame(1, d, s, t, body).subarray(8);
    dev.inject([eth('ff:ff:ff:ff:ff:ff', '02:00:00:00:00:01', 0x0800, Buffer.alloc(40))]);
    expect(tr.sent.map((s) => s.addr).sort()).toEqual([PEER, ipv4ToU32('198.18.0.3')].sort());
    tr.sent = [];
    dev.inject([eth(PEER_MAC, '02:00:00:00:00:01', 0x0800, Buffer.alloc(40))]);
    expect(tr.sent.map((s) => s.addr)).toEqual([PEER]);
    tr.sent = [];
    dev.inject([eth('02:00:00:00:00:77', '02:00:00:00:00:01', 0x0800, Buffer.alloc(40))]);
    expect(tr.sent).toHaveLength(2);
    expect(misses).toContain('l2miss');
    // learning
    tr.inject([{ addr: PEER, data: vxlanFrame(1, '02:00:00:00:00:01', '02:00:00:00:00:77', 0x0800, Buffer.alloc(40)) }]);
    expect(b.fdbEntries()['02:00:00:00:00:77']).toEqual(['198.18.0.2']);
    // a configured (lease) entry is never moved by learning
    tr.inject([{ addr: ipv4ToU32('198.18.0.3'), data: vxlanFrame(1, '02:00:00:00:00:01', PEER_MAC, 0x0800, Buffer.alloc(40)) }]);
    expect(b.fdbEntries()[PEER_MAC]).toEqual(['198.18.0.2']);
    // proxy ARP for 198.19.3.0
    const arp = Buffer.alloc(28);
    arp.writeUInt16BE(1, 0); arp.writeUInt16BE(0x0800, 2); arp[4] = 6; arp[5] = 4; arp.writeUInt16BE(1, 6);
    Buffer.from([2, 0, 0, 0, 0, 1]).copy(arp, 8); Buffer.from([198, 19, 1, 0]).copy(arp, 14); Buffer.from([198, 19, 3, 0]).copy(arp, 24);
    dev.written = [];
    dev.inject([eth('ff:ff:ff:ff:ff:ff', '02:00:00:00:00:01', 0x0806, arp)]);
    expect(dev.written).toHaveLength(1);
    expect(dev.written[0]!.subarray(14 + 8, 14 + 14).toString('hex')).toBe('020000000003');
  });
});

describe('VxlanBackend peer model is flannel\'s HostModel', () => {
  it('two leases sharing one VTEP MAC: removing one keeps the other forwarding (refcounted FDB entry)', async () => {
    const { b, dev, tr } = await vx('l3');
    // one host (198.18.0.2, one VTEP MAC) holding a second subnet
    b.addPeer({ subnet: '198.19.4.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC });
    b.removePeer('198.19.2.0/24');
    dev.inject([ipv4Packet('198.19.1.5', '198.19.4.7')]);
    expect(b.stats().drops).toEqual({});
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.addr).toBe(PEER);
    // the removed subnet is gone: no route, ICMP net unreachable into the device
    dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7')]);
    expect(b.stats().drops).toEqual({ tx_no_route: 1 });
    expect(b.showTables().fdb).toBe(`${PEER_MAC} dev flannel.1 dst 198.18.0.2 self permanent`);
    b.removePeer('198.19.4.0/24');
    expect(b.showTables().fdb).toBe('');
  });
});

describe('core: failures are counted by what happened', () => {
  it('send failures by errno class; kernel failures in stats().errors and onError', async () => {
    const io = new FakeIo();
    const kernel = { ...nullKernel, replaceRoute: (): Promise<void> => Promise.reject(new Error('RTM_NEWROUTE: ENETUNREACH')) };
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' });
    const tr = io.tr!;
    // the kernel took the first datagram, then refused: EADDRNOTAVAIL (our address vanished), then EAGAIN
    const errs = [0, 99, 11, 101, 1];
    tr.sendBatch = (s, n) => { for (let i = 0; i < n; i++) if (errs[i] === 0) tr.sent.push({ addr: s[i]!.addr, port: s[i]!.port, data: Buffer.alloc(0), segSize: 0, family: 4, addr6: new Uint8Array(16) }); return 1; };
    (tr as { sendError: (i: number) => number }).sendError = (i: number) => errs[i] ?? 11;
    io.dev!.inject([1, 2, 3, 4, 5].map((k) => ipv4Packet('198.19.1.5', `198.19.2.${k}`)));
    expect(b.stats().txPackets).toBe(1);
    expect(b.stats().drops).toEqual({ tx_no_source_address: 1, tx_socket_full: 1, tx_underlay_unreachable: 1, tx_blocked: 1 });
    expect(b.stats().errors).toEqual({ kernel: 0, send: { EADDRNOTAVAIL: 1, EAGAIN: 1, ENETUNREACH: 1, EPERM: 1 } });
  });

  it('a kernel route that fails after start shows in stats().errors and onError, with its cause', async () => {
    const io = new FakeIo();
    const seen: Error[] = [];
    const kernel = { ...nullKernel, replaceRoute: (): Promise<void> => Promise.reject(new Error('RTM_NEWROUTE: ENETUNREACH')) };
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel, onError: (e) => seen.push(e) });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC });
    await new Promise((r) => setImmediate(r));
    expect(b.stats().errors).toEqual({ kernel: 1, lastKernel: 'route 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink: RTM_NEWROUTE: ENETUNREACH' });
    expect(seen).toHaveLength(1);
    expect((seen[0]!.cause as Error).message).toBe('RTM_NEWROUTE: ENETUNREACH');
  });

  it('device read errors show in stats().errors.device and onError', async () => {
    const io = new FakeIo();
    const seen: string[] = [];
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, onError: (e) => seen.push(e.message) });
    await b.start();
    io.dev!.failRead('EIO');
    io.dev!.failRead('EIO');
    expect(b.stats().errors).toEqual({ kernel: 0, device: { EIO: 2 } });
    expect(seen).toEqual(['read flannel0: EIO', 'read flannel0: EIO']);
  });

  it('a complete datagram larger than its receive slot is rx_oversized, a cut IPv4 packet rx_truncated', async () => {
    const { b, dev, tr } = await udp();
    const s = tr.slots[0]!;
    const big = ipv4Packet('198.19.2.7', '198.19.1.5', { payload: 1400 });
    big.writeUInt16BE(s.buf.length - 96 + 100, 2); // says it is longer than the slot could hold
    tr.inject([{ addr: PEER, data: Buffer.concat([big, Buffer.alloc(s.buf.length - 96 - big.length)]) }]);
    tr.inject([{ addr: PEER, data: ipv4Packet('198.19.2.7', '198.19.1.5', { payload: 100 }).subarray(0, 60) }]);
    expect(dev.written).toHaveLength(0);
    expect(b.stats().drops).toEqual({ rx_oversized: 1, rx_truncated: 1 });
  });
});

describe('core lifecycle', () => {
  it('stop() while start() is under way: nothing keeps forwarding, the device and socket are closed', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const io = new FakeIo();
    const kernel = { ...nullKernel, async configureDevice(): Promise<void> { await gate; } };
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel });
    const s = b.start();
    await new Promise((r) => setImmediate(r));
    const st = b.stop();
    release();
    await s;
    await st;
    expect(io.dev!.closed).toBe(true);
    expect(io.dev!.handler).toBeUndefined();
    // and it can start again afterwards
    await b.start();
    expect(io.dev!.closed).toBe(false);
    await b.stop();
    expect(io.dev!.closed).toBe(true);
  });
});

describe('VxlanBackend kernel routes follow subnets, not lease contents', () => {
  it('a changed lease (new MAC, new public IP) keeps its route; a removed and re-added one is installed again; a failed one is retried on the next change', async () => {
    const ops: string[] = [];
    let fail = false;
    const kernel = { ...nullKernel,
      async replaceRoute(dst: string, via: string) { ops.push(`replace ${dst} via ${via}`); if (fail) throw new Error('EPERM'); },
      async deleteRoute(dst: string) { ops.push(`delete ${dst}`); },
    };
    const errors: string[] = [];
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io: new FakeIo(), kernel, onError: (e) => errors.push(e.message) });
    await b.start();
    const lease = (mac: string, pub = '198.18.0.2') => ({ subnet: '198.19.2.0/24', publicIp: pub, backendType: 'vxlan' as const, vni: 1, vtepMac: mac });
    b.addPeer(lease(PEER_MAC));
    b.addPeer(lease('02:00:00:00:00:09', '198.18.0.9'));
    b.removePeer('198.19.2.0/24');
    b.addPeer(lease(PEER_MAC));
    await b.settled();
    expect(ops).toEqual(['replace 198.19.2.0/24 via 198.19.2.0', 'delete 198.19.2.0/24', 'replace 198.19.2.0/24 via 198.19.2.0']);
    ops.length = 0;
    fail = true;
    b.addPeer({ ...lease(PEER_MAC), subnet: '198.19.3.0/24' });
    await b.settled();
    await new Promise((r) => setTimeout(r, 0));
    expect(errors).toHaveLength(1);
    fail = false;
    b.addPeer({ ...lease('02:00:00:00:00:08'), subnet: '198.19.3.0/24' }); // changed: retried because it failed
    b.addPeer({ ...lease('02:00:00:00:00:07'), subnet: '198.19.3.0/24' }); // changed again: in by now
    await b.settled();
    expect(ops).toEqual(['replace 198.19.3.0/24 via 198.19.3.0', 'replace 198.19.3.0/24 via 198.19.3.0']);
    await b.stop();
  });
});
