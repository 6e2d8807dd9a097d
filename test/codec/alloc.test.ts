/**
 * Zero allocation on the hot path: once optimised, a million encapsulations and
 * decapsulations must start no scavenge and grow V8's new space by less than 64 KB (a
 * per-packet allocation of even one boxed number would add ~16 MB: see test/helpers/alloc.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  emitEthernet, emitIpv4, emitUdp, EtherType, flannelDecrementTtl, flannelUdpValidate, IpProto, ipv4FillChecksum,
  VxlanDecapResult, vxlanDecapFrame, vxlanDecapOptions, vxlanDecapSocket, vxlanEncapFull, vxlanEncapSocket, vxlanTunnel,
  VXLAN_IPV4_OVERHEAD,
} from '../../src/codec/index.js';
import { HEADROOM, SLOT_SIZE } from '../../src/tun/types.js';
import { youngAllocation } from '../helpers/alloc.js';

/**
 * Young-generation allocation over a million iterations of `body`, once optimised (warm-up runs
 * of 300,000 repeat until one allocates nothing): no scavenge may start, and new space may grow
 * by less than 64 KB (a per-iteration allocation of even one boxed number is ~16 MB).
 */
async function expectNoAllocation(body: (n: number) => number): Promise<void> {
  let r = 0;
  const a = await youngAllocation(() => { r = body(1_000_000); }, () => { r = body(300_000); });
  expect(r).not.toBe(0.5);
  expect(a.scavenges, `scavenges in the warm-up rounds: ${a.warmUp.join(' ')}`).toBe(0);
  if (a.growth !== undefined) expect(a.growth).toBeLessThan(64 * 1024);
}

describe('zero allocation', () => {
  const buf = Buffer.alloc(SLOT_SIZE);
  emitEthernet(buf, HEADROOM, 0x0ac613020000, 0x0ac613010000, EtherType.IPv4);
  emitIpv4(buf, HEADROOM + 14, 0, 84, 1, 0x4000, 64, IpProto.UDP, 0xc6130105, 0xc6130205);
  emitUdp(buf, HEADROOM + 34, 40000, 5201, 64);
  const res = new VxlanDecapResult();
  const opts = vxlanDecapOptions({ vni: 1 });

  it('socket-form encap + decap', async () => {
    await expectNoAllocation((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const o = vxlanEncapSocket(buf, HEADROOM, 1);
        if (vxlanDecapSocket(buf, o, 106, 1, res) === 'ok') s = (s + res.len) | 0;
      }
      return s;
    });
  });

  // Full form (the codec API for raw outer headers; no dataplane of ours uses it), encapsulation
  // and decapsulation in loops of their own. The outer addresses (198.18.x.x) are over 2^31: in
  // about one run in five the optimiser did not inline the pseudo-header sum and boxed both per
  // call (one scavenge per 300,000 calls); vxlanEncapFull now sums their 16-bit halves inline.
  const t = vxlanTunnel({ srcMac: 2, dstMac: 3, srcIp: 0xc6120001, dstIp: 0xc6120002 });

  it('full-form encap (UDP checksum)', async () => {
    await expectNoAllocation((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        buf[HEADROOM + 35] = i & 255; // vary the inner flow (source port) so the hash varies
        s = (s + vxlanEncapFull(buf, HEADROOM, 98, t)) | 0;
      }
      return s;
    });
  });

  it('frame decap with validation', async () => {
    const o = vxlanEncapFull(buf, HEADROOM, 98, t);
    await expectNoAllocation((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) if (vxlanDecapFrame(buf, o, 98 + VXLAN_IPV4_OVERHEAD, opts, res) === 'ok') s = (s + res.len) | 0;
      return s;
    });
  });

  it('flannel validate + TTL decrement', async () => {
    const fl = Buffer.alloc(SLOT_SIZE);
    emitIpv4(fl, HEADROOM, 0, 84, 1, 0x4000, 255, IpProto.ICMP, 0xc6130105, 0xc6130205);
    await expectNoAllocation((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        if ((i & 127) === 0) { fl[HEADROOM + 8] = 255; ipv4FillChecksum(fl, HEADROOM); }
        if (flannelUdpValidate(fl, HEADROOM, 84) === 'ok' && flannelDecrementTtl(fl, HEADROOM) === 'ok') s = (s + 1) | 0;
      }
      return s;
    });
  });
});
