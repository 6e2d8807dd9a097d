/** Address helpers of src/tun/rtnl.ts (used to build and read rtnetlink attributes). */
import { describe, expect, it } from 'vitest';
import { ipToBytes, bytesToIp, macToBytes, bytesToMac, errnoName, OsError } from '../../src/tun/index.js';

describe('rtnl address helpers', () => {
  it('IPv4 and IPv6 round-trip in canonical form', () => {
    for (const s of ['198.19.0.1', '0.0.0.0', '255.255.255.255', '::', '::1', 'fd00:5::1', 'fe80::11:22ff:fe33:4455', '1:2:3:4:5:6:7:8', '1::8', '1:0:0:2::3']) {
      expect(bytesToIp(ipToBytes(s))).toBe(s);
    }
    // IPv4-mapped addresses print in RFC 5952 section 5 form, as inet_ntop (and so ip(8)) prints them
    expect(bytesToIp(ipToBytes('::ffff:198.19.0.1'))).toBe('::ffff:198.19.0.1');
    expect([...ipToBytes('fd00::1')]).toEqual([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });
  it('rejects bad addresses with EINVAL', () => {
    expect(() => ipToBytes('198.19.0')).toThrow(OsError);
    expect(() => ipToBytes('x::y')).toThrow(/EINVAL/);
    expect(() => macToBytes('02:00:00:00:00')).toThrow(/EINVAL/);
  });
  it('MAC round-trip and errno names', () => {
    expect(bytesToMac(macToBytes('02:AA:bb:0:1:ff'))).toBe('02:aa:bb:00:01:ff');
    expect(errnoName(1)).toBe('EPERM');
    expect(errnoName(-17)).toBe('EEXIST');
    const e = new OsError(1, 'RTM_NEWLINK x');
    expect(e.code).toBe('EPERM');
    expect(e.errno).toBe(-1);
    expect(e.message).toMatch(/needs CAP_NET_ADMIN/);
  });
});
