import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AddrError, formatIpv6, formatMac, formatMacBytes, IpAddr, ipAddr, IpPrefix, ipPrefix, ipv4InPrefix, ipv4Mask, ipv4Network,
  ipv4ToU32, ipv6Equal, isBroadcastMac, isLocalMac, isMulticastMac, isUnicastMac, macToNumber, parseIp, parseIpv6,
  parseMac, parseMacBytes, parsePrefix, readIpv4, u32ToIpv4, writeIpv4, writeMac,
} from '../../src/codec/index.js';

describe('MAC addresses', () => {
  it('parses and formats', () => {
    expect(parseMac('aa:bb:cc:dd:ee:ff')).toBe(0xaabbccddeeff);
    expect(parseMac('AA-BB-CC-DD-EE-0F')).toBe(0xaabbccddee0f);
    expect(parseMac('00:00:00:00:00:01')).toBe(1);
    expect(formatMac(0x0a0b0c0d0e0f)).toBe('0a:0b:0c:0d:0e:0f');
    expect(formatMac(0xffffffffffff)).toBe('ff:ff:ff:ff:ff:ff');
    expect(formatMac(0)).toBe('00:00:00:00:00:00');
    expect([...parseMacBytes('01:02:03:04:05:06')]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(formatMacBytes(Uint8Array.from([9, 9, 1, 2, 3, 4, 5, 6]), 2)).toBe('01:02:03:04:05:06');
  });
  it('rejects malformed strings naming the value', () => {
    for (const bad of ['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'aa:bb-cc:dd:ee:ff', 'gg:bb:cc:dd:ee:ff', 'a:b:c:d:e:f', ' aa:bb:cc:dd:ee:ff']) {
      expect(() => parseMac(bad)).toThrow(`"${bad}"`);
    }
  });
  it('round-trips bytes <-> number <-> string (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.nat(10), (b, off) => {
      const buf = new Uint8Array(off + 6);
      buf.set(b, off);
      const n = macToNumber(buf, off);
      expect(Number.isSafeInteger(n)).toBe(true);
      expect(n).toBeLessThan(2 ** 48);
      expect(parseMac(formatMac(n))).toBe(n);
      const out = new Uint8Array(off + 6);
      writeMac(out, off, n);
      expect([...out.subarray(off)]).toEqual([...b]);
      expect(isMulticastMac(n)).toBe((b[0]! & 1) === 1);
      expect(isLocalMac(n)).toBe((b[0]! & 2) === 2);
    }));
  });
  it('classifies group addresses', () => {
    expect(isMulticastMac(parseMac('01:00:5e:00:00:01'))).toBe(true);
    expect(isMulticastMac(parseMac('33:33:00:00:00:01'))).toBe(true);
    expect(isMulticastMac(parseMac('ff:ff:ff:ff:ff:ff'))).toBe(true);
    expect(isBroadcastMac(parseMac('ff:ff:ff:ff:ff:ff'))).toBe(true);
    expect(isMulticastMac(parseMac('0a:c6:13:01:00:00'))).toBe(false);
    expect(isMulticastMac(parseMac('fe:ff:ff:ff:ff:ff'))).toBe(false);
    expect(isUnicastMac(0)).toBe(false);
    expect(isUnicastMac(parseMac('02:00:00:00:00:01'))).toBe(true);
  });
});

describe('IPv4 addresses and CIDRs', () => {
  it('reads and writes uint32 addresses', () => {
    const b = new Uint8Array(6);
    writeIpv4(b, 1, ipv4ToU32('198.19.2.255'));
    expect([...b]).toEqual([0, 198, 19, 2, 255, 0]);
    expect(readIpv4(b, 1)).toBe(ipv4ToU32('198.19.2.255'));
    expect(u32ToIpv4(readIpv4(b, 1))).toBe('198.19.2.255');
  });
  it('parses CIDRs and rejects bad ones naming the value', () => {
    const p = ipPrefix('198.19.0.0/16');
    expect([p.net, p.len, p.family, p.neti, p.maski]).toEqual([ipv4ToU32('198.19.0.0'), 16, 4, ipv4ToU32('198.19.0.0') | 0, 0xffff0000 | 0]);
    expect(ipPrefix('0.0.0.0/0').toString()).toBe('0.0.0.0/0');
    expect(ipPrefix('255.255.255.255/32').net).toBe(0xffffffff);
    expect(ipPrefix('198.19.2.0/24').toString()).toBe('198.19.2.0/24');
    expect(ipPrefix('198.19.2.0/24').toKey()).toBe('198.19.2.0-24');
    for (const bad of ['198.19.0.0', '198.19.0.0/33', '198.19.0.0/-1', '198.19.0.0/08', '198.19.0/16', '198.19.0.256/16', '/16', '198.19.0.0/', 'x/1']) {
      expect(() => ipPrefix(bad)).toThrow(`"${bad}"`);
      const r = parsePrefix(bad);
      expect(r).toBeInstanceOf(AddrError);
      expect((r as AddrError).input).toBe(bad);
    }
  });
  it('masks and matches prefixes', () => {
    expect(ipv4Mask(0)).toBe(0);
    expect(ipv4Mask(24)).toBe(0xffffff00);
    expect(ipv4Mask(32)).toBe(0xffffffff);
    expect(u32ToIpv4(ipv4Network(ipv4ToU32('198.19.2.77'), 24))).toBe('198.19.2.0');
    expect(ipv4InPrefix(ipv4ToU32('198.19.2.77'), ipv4ToU32('198.19.0.0'), 16)).toBe(true);
    expect(ipv4InPrefix(ipv4ToU32('198.20.2.77'), ipv4ToU32('198.19.0.0'), 16)).toBe(false);
    expect(ipv4InPrefix(ipv4ToU32('1.2.3.4'), 0, 0)).toBe(true);
  });
});

describe('IpAddr and IpPrefix: one type for both families', () => {
  const reason = (r: unknown): string => (r instanceof AddrError ? r.reason : 'ok');
  it('gives a typed reason for every refusal, never throwing from parse*', () => {
    expect(reason(parseIp('198.18.0.300'))).toBe('bad-address');
    expect(reason(parseIp('2001:2::1', { family: 4 }))).toBe('wrong-family');
    expect(reason(parseIp('198.18.0.1', { family: 6 }))).toBe('wrong-family');
    expect(reason(parsePrefix('198.19.0.0'))).toBe('missing-prefix-length');
    expect(reason(parsePrefix('198.19.0.0', { bare: true }))).toBe('ok');
    expect(parsePrefix('2001:2::1', { bare: true }).toString()).toBe('2001:2::1/128');
    expect(reason(parsePrefix('198.19.0.0/33'))).toBe('bad-prefix-length');
    expect(reason(parsePrefix('2001:2::/129'))).toBe('bad-prefix-length');
    expect(reason(parsePrefix('198.19.1.1/16'))).toBe('host-bits-set');
    expect((parsePrefix('198.19.1.1/16') as AddrError).message).toContain('did you mean 198.19.0.0/16?');
    expect(reason(parsePrefix('2001:2::1/48'))).toBe('host-bits-set');
    expect(parsePrefix('2001:2:0:1::5/48', { hostBits: 'clear' }).toString()).toBe('2001:2::/48');
    expect(reason(parsePrefix('default'))).toBe('missing-prefix-length');
    expect(parsePrefix('default', { keywords: true }).toString()).toBe('0.0.0.0/0');
    expect(parsePrefix('any', { keywords: true, family: 6 }).toString()).toBe('::/0');
    expect(reason(parsePrefix(42 as unknown as string))).toBe('bad-address');
    expect(() => ipAddr('nope')).toThrow(AddrError);
  });
  it('contains, covers and overlaps across families', () => {
    const net = ipPrefix('198.19.0.0/16');
    expect(net.contains(ipAddr('198.19.255.1'))).toBe(true);
    expect(net.contains(ipAddr('198.20.0.1'))).toBe(false);
    expect(net.contains(ipAddr('2001:2::1'))).toBe(false);
    expect(net.containsV4(ipv4ToU32('198.19.3.4') | 0)).toBe(true);
    expect(net.covers(ipPrefix('198.19.3.0/24'))).toBe(true);
    expect(ipPrefix('198.19.3.0/24').covers(net)).toBe(false);
    expect(ipPrefix('198.19.3.0/24').overlaps(net)).toBe(true);
    expect(ipPrefix('198.19.3.0/24').overlaps(ipPrefix('198.19.4.0/24'))).toBe(false);
    const n6 = ipPrefix('2001:2::/48');
    expect(n6.contains(ipAddr('2001:2:0:ffff::1'))).toBe(true);
    expect(n6.contains(ipAddr('2001:3::1'))).toBe(false);
    expect(n6.covers(ipPrefix('2001:2:0:1::/64'))).toBe(true);
    expect(n6.overlaps(net)).toBe(false);
    expect(ipAddr('2001:2::1').equals(ipAddr('2001:2:0:0::1'))).toBe(true);
    expect(ipAddr('198.18.0.1').equals(IpAddr.fromV4(0xc6120001))).toBe(true);
    expect(IpPrefix.v4(0xc6130201, 24).toString()).toBe('198.19.2.0/24');
  });
  it('agrees with a bit-by-bit oracle for IPv4 and IPv6 membership (property)', () => {
    const bit = (b: Uint8Array, i: number): number => (b[i >> 3]! >> (7 - (i & 7))) & 1;
    fc.assert(fc.property(fc.boolean(), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(128),
      (v6, ab, bb, l) => {
        const fam = v6 ? 6 : 4;
        const len = v6 ? l : l % 33;
        const a = IpAddr.fromBytes(ab, fam);
        const b = IpAddr.fromBytes(bb, fam);
        const p = new IpPrefix(a, len);
        let inside = true;
        for (let i = 0; i < len; i++) if (bit(ab, i) !== bit(bb, i)) inside = false;
        expect(p.contains(b)).toBe(inside);
        expect(p.contains(a)).toBe(true);
        expect(ipPrefix(p.toString()).equals(p)).toBe(true);
        expect(parseIp(a.toString()) instanceof IpAddr && ipAddr(a.toString()).equals(a)).toBe(true);
        if (!v6) expect(p.containsV4(b.v4)).toBe(inside);
      }), { numRuns: 3000 });
  });
});

describe('IPv6 addresses', () => {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  it('parses the RFC 4291 forms', () => {
    expect(hex(parseIpv6('::'))).toBe('0'.repeat(32));
    expect(hex(parseIpv6('::1'))).toBe('0'.repeat(31) + '1');
    expect(hex(parseIpv6('2001:db8::1'))).toBe('20010db8' + '0'.repeat(23) + '1');
    expect(hex(parseIpv6('fe80::'))).toBe('fe80' + '0'.repeat(28));
    expect(hex(parseIpv6('1:2:3:4:5:6:7:8'))).toBe('00010002000300040005000600070008');
    expect(hex(parseIpv6('::ffff:198.18.0.1'))).toBe('00000000000000000000ffffc6120001');
    expect(hex(parseIpv6('64:ff9b::198.18.0.1'))).toBe('0064ff9b0000000000000000c6120001');
    expect(hex(parseIpv6('1:2:3:4:5:6::'))).toBe('00010002000300040005000600000000');
    expect(hex(parseIpv6('ABCD::EF'))).toBe('abcd' + '0'.repeat(24) + '00ef');
  });
  it('rejects malformed text naming the value', () => {
    for (const bad of [':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::', ':1::', '1::2:', '::1.2.3', '1:2:3:4:5:6:7::8', 'fe80::1%eth0', '::ffff:1.2.3.4:5']) {
      expect(() => parseIpv6(bad)).toThrow(`"${bad}"`);
    }
  });
  it('formats canonically (RFC 5952) and agrees with the WHATWG URL serializer (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }),
      (words) => {
        const b = new Uint8Array(16);
        words.forEach((w, i) => { b[2 * i] = w >>> 8; b[2 * i + 1] = w & 255; });
        const s = formatIpv6(b);
        expect(hex(parseIpv6(s))).toBe(hex(b));
        const mapped = words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff;
        if (!mapped) expect(s).toBe(new URL(`http://[${s}]/`).hostname.slice(1, -1));
        const out = new Uint8Array(20);
        parseIpv6(s, out, 3);
        expect(ipv6Equal(out, 3, b, 0)).toBe(true);
      },
    ), { numRuns: 2000 });
    expect(formatIpv6(parseIpv6('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(parseIpv6('2001:db8:0:1:1:1:1:1'))).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpv6(parseIpv6('::ffff:198.18.0.1'))).toBe('::ffff:198.18.0.1');
  });
});
