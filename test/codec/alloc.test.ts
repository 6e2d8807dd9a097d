/**
 * Zero allocation on the hot path: once optimised, a million encapsulations and
 * decapsulations must not grow V8's new space (a per-packet allocation of even one
 * boxed number would add ~16 MB and trigger scavenges, making the delta negative or large).
 */
import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import {
  emitEthernet, emitIpv4, emitUdp, EtherType, flannelDecrementTtl, flannelUdpValidate, IpProto, ipv4FillChecksum,
  VxlanDecapResult, vxlanDecapFrame, vxlanDecapOptions, vxlanDecapSocket, vxlanEncapFull, vxlanEncapSocket, vxlanTunnel,
  VXLAN_IPV4_OVERHEAD,
} from '../../src/codec/index.js';
import { HEADROOM, SLOT_SIZE } from '../../src/tun/types.js';

function newSpace(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
}

/**
 * New-space growth over a million iterations of `body`, once optimised. On a loaded machine
 * V8's optimising compiler (concurrent) finishes late and unoptimised code boxes numbers, so
 * warm-up rounds repeat (at most 8) until one grows new space by less than 64 KB; a real
 * per-iteration allocation never gets there, and the measured run after it still fails.
 */
function measure(body: (n: number) => number): number {
  for (let i = 0; i < 8; i++) {
    const w = newSpace();
    body(300_000);
    const d = newSpace() - w;
    if (d >= 0 && d < 64 * 1024) break;
  }
  const a = newSpace();
  const r = body(1_000_000);
  const b = newSpace();
  expect(r).not.toBe(0.5);
  return b - a;
}

describe('zero allocation', () => {
  const buf = Buffer.alloc(SLOT_SIZE);
  emitEthernet(buf, HEADROOM, 0x0ac613020000, 0x0ac613010000, EtherType.IPv4);
  emitIpv4(buf, HEADROOM + 14, 0, 84, 1, 0x4000, 64, IpProto.UDP, 0xc6130105, 0xc6130205);
  emitUdp(buf, HEADROOM + 34, 40000, 5201, 64);
  const res = new VxlanDecapResult();
  const opts = vxlanDecapOptions({ vni: 1 });

  it('socket-form encap + decap', () => {
    const d = measure((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const o = vxlanEncapSocket(buf, HEADROOM, 1);
        if (vxlanDecapSocket(buf, o, 106, 1, res) === 'ok') s = (s + res.len) | 0;
      }
      return s;
    });
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });

  it('full-form encap (UDP checksum) + frame decap with validation', () => {
    const t = vxlanTunnel({ srcMac: 2, dstMac: 3, srcIp: 0xc6120001, dstIp: 0xc6120002 });
    const d = measure((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        buf[HEADROOM + 35] = i & 255; // vary the inner flow (source port) so the hash varies
        const o = vxlanEncapFull(buf, HEADROOM, 98, t);
        if (vxlanDecapFrame(buf, o, 98 + VXLAN_IPV4_OVERHEAD, opts, res) === 'ok') s = (s + res.len) | 0;
      }
      return s;
    });
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });

  it('flannel validate + TTL decrement', () => {
    const fl = Buffer.alloc(SLOT_SIZE);
    emitIpv4(fl, HEADROOM, 0, 84, 1, 0x4000, 255, IpProto.ICMP, 0xc6130105, 0xc6130205);
    const d = measure((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        if ((i & 127) === 0) { fl[HEADROOM + 8] = 255; ipv4FillChecksum(fl, HEADROOM); }
        if (flannelUdpValidate(fl, HEADROOM, 84) === 'ok' && flannelDecrementTtl(fl, HEADROOM) === 'ok') s = (s + 1) | 0;
      }
      return s;
    });
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });
});
