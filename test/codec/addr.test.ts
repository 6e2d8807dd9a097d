import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatIpv4Cidr, formatIpv6, formatMac, formatMacBytes, ipv4InPrefix, ipv4Mask, ipv4Network, ipv4ToU32, ipv6Equal,
  isBroadcastMac, isLocalMac, isMulticastMac, isUnicastMac, macToNumber, numberToMac, parseIpv4Cidr, parseIpv6,
  parseMac, parseMacBytes, readIpv4, u32ToIpv4, writeIpv4, writeMac,
} from '../../src/codec/index.js';

describe('MAC addresses', () => {
  it('parses and formats', () => {
    expect(parseMac('aa:bb:cc:dd:ee:ff')).toBe(0xaabbccddeeff);
    expect(parseMac('AA-BB-CC-DD-EE-0F')).toBe(0xaabbccddee0f);
    expect(parseMac('00:00:00:00:00:01')).toBe(1);
    expect(formatMac(0x0a0b0c0d0e0f)).toBe('0a:0b:0c:0d:0e:0f');
    expect(numberToMac(0xffffffffffff)).toBe('ff:ff:ff:ff:ff:ff');
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
    expect(parseIpv4Cidr('198.19.0.0/16')).toEqual({ addr: ipv4ToU32('198.19.0.0'), prefixLen: 16 });
    expect(parseIpv4Cidr('0.0.0.0/0')).toEqual({ addr: 0, prefixLen: 0 });
    expect(parseIpv4Cidr('255.255.255.255/32')).toEqual({ addr: 0xffffffff, prefixLen: 32 });
    expect(formatIpv4Cidr(parseIpv4Cidr('198.19.2.0/24'))).toBe('198.19.2.0/24');
    for (const bad of ['198.19.0.0', '198.19.0.0/33', '198.19.0.0/-1', '198.19.0.0/08', '198.19.0/16', '198.19.0.256/16', '/16', '198.19.0.0/', 'x/1']) {
      expect(() => parseIpv4Cidr(bad)).toThrow(`"${bad}"`);
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
