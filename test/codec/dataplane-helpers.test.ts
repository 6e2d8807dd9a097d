import { describe, it, expect } from 'vitest';
import {
  writeMacHL, macHi, macLo, writeMac, parseMac, isMulticastMacAt, vxlanVni, vxlanFlagsValid, emitVxlanPolicy,
  emitVxlan, emitVxlanGbp, ipv4DontFragment, ipv4Valid, emitIpv4, ArpPacket, buildArpReply, buildArpRequest,
  macToNumber, readIpv4, ArpOp, ETH_HLEN, VXLAN_FLAG_I, VXLAN_FLAG_G, IPV4_DF,
} from '../../src/codec/index.js';

describe('codec helpers used by the dataplanes', () => {
  it('writeMacHL writes the same bytes as writeMac from (hi16, lo32) halves', () => {
    for (const s of ['02:42:c6:12:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:01', '0e:80:00:00:00:ff']) {
      const n = parseMac(s);
      const a = Buffer.alloc(6);
      const b = Buffer.alloc(6);
      writeMac(a, 0, n);
      writeMacHL(b, 0, macHi(n), macLo(n));
      expect(b).toEqual(a);
      expect(macHi(n) * 2 ** 32 + (macLo(n) >>> 0)).toBe(n);
      expect(macLo(n) | 0).toBe(macLo(n));
    }
  });

  it('isMulticastMacAt tests the I/G bit in the buffer', () => {
    expect(isMulticastMacAt(Buffer.from([0x01, 0, 0x5e, 0, 0, 1]), 0)).toBe(true);
    expect(isMulticastMacAt(Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 1)).toBe(true);
    expect(isMulticastMacAt(Buffer.from([0x02, 0, 0, 0, 0, 1]), 0)).toBe(false);
  });

  it('vxlanFlagsValid: the kernel receive check, with and without GBP', () => {
    const h = Buffer.alloc(8);
    emitVxlan(h, 0, 0x123456);
    expect(vxlanVni(h, 0)).toBe(0x123456);
    expect(vxlanFlagsValid(h, 0, false)).toBe(true);
    expect(vxlanFlagsValid(h, 0, true)).toBe(true);
    h[7] = 1;
    expect(vxlanFlagsValid(h, 0, false)).toBe(false);
    h[7] = 0;
    h[0] = 0;
    expect(vxlanFlagsValid(h, 0, false)).toBe(false);
    h[0] = VXLAN_FLAG_I | 0x01; // unknown flag
    expect(vxlanFlagsValid(h, 0, false)).toBe(false);
    expect(vxlanFlagsValid(h, 0, true)).toBe(false);
    emitVxlanGbp(h, 0, 7, 0x1234, 0x40);
    expect(h[0]).toBe(VXLAN_FLAG_I | VXLAN_FLAG_G);
    expect(vxlanFlagsValid(h, 0, false)).toBe(false);
    expect(vxlanFlagsValid(h, 0, true)).toBe(true);
    h[1] = 0x01; // not a GBP bit
    expect(vxlanFlagsValid(h, 0, true)).toBe(false);
  });

  it('emitVxlanPolicy: GBP header only with GBP on and a non-zero policy', () => {
    const a = Buffer.alloc(8);
    const b = Buffer.alloc(8);
    emitVxlanPolicy(a, 0, 1, true, 0);
    emitVxlan(b, 0, 1);
    expect(a).toEqual(b);
    emitVxlanPolicy(a, 0, 1, false, 5);
    expect(a).toEqual(b);
    expect(emitVxlanPolicy(a, 0, 1, true, 0x0102)).toBe(8);
    emitVxlanGbp(b, 0, 1, 0x0102);
    expect(a).toEqual(b);
  });

  it('ipv4DontFragment and ipv4Valid', () => {
    const p = Buffer.alloc(60);
    emitIpv4(p, 0, 0, 40, 1, IPV4_DF, 64, 17, 0xc6120001, 0xc6130001);
    expect(ipv4DontFragment(p, 0)).toBe(true);
    expect(ipv4Valid(p, 0, 40)).toBe(true);
    expect(ipv4Valid(p, 0, 60)).toBe(true); // trailing padding
    expect(ipv4Valid(p, 0, 39)).toBe(false);
    p[10]! ^= 1;
    expect(ipv4Valid(p, 0, 40)).toBe(false);
    emitIpv4(p, 0, 0, 40, 1, 0, 64, 17, 0xc6120001, 0xc6130001);
    expect(ipv4DontFragment(p, 0)).toBe(false);
  });

  it('buildArpReply works in place over the request frame', () => {
    const f = Buffer.alloc(42);
    const requester = parseMac('02:00:00:00:00:01');
    const ours = parseMac('02:00:00:00:00:02');
    buildArpRequest(f, 0, requester, 0xc6120001, 0xc6120002);
    const arp = new ArpPacket();
    expect(arp.check(f, ETH_HLEN, 28)).toBe('ok');
    expect(arp.op).toBe(ArpOp.REQUEST);
    expect(buildArpReply(f, 0, arp, ours)).toBe(42);
    expect(macToNumber(f, 0)).toBe(requester);
    expect(macToNumber(f, 6)).toBe(ours);
    expect(arp.op).toBe(ArpOp.REPLY);
    expect(arp.sha).toBe(ours);
    expect(arp.spa).toBe(0xc6120002);
    expect(arp.tha).toBe(requester);
    expect(readIpv4(f, ETH_HLEN + 24)).toBe(0xc6120001);
  });
});
