/**
 * Checks shared by the fixture and live kernel-capture tests: decode every field of
 * kernel-produced VXLAN frames and re-encapsulate the same inner frame with our full
 * form, then compare byte for byte (after copying the fields the kernel picks: IP ID,
 * UDP source port).
 *
 * About the outer UDP checksum in a capture taken on the sending veth: with `udpcsum`
 * (the default on current kernels) the kernel leaves the skb CHECKSUM_PARTIAL, so the
 * field holds the folded pseudo-header sum (the offload seed), not the final checksum.
 * The check accepts either a fully valid checksum or exactly that seed.
 */
import { expect } from 'vitest';
import {
  ETH_HLEN, EtherType, EthernetFrame, IcmpPacket, IpProto, Ipv4Packet, UdpDatagram, VxlanDecapResult,
  VxlanHeader, csumFold, ipv4ToU32, parseMac, pseudoSum4, udpFillChecksum4, udpVerify4, vxlanDecapFrame,
  vxlanDecapOptions, vxlanEncapFull, vxlanTunnel, VXLAN_IPV4_OVERHEAD,
} from '../../src/codec/index.js';
import { HEADROOM } from '../../src/tun/types.js';
import type { KernelCase } from './kernel-capture.js';
import { UNDERLAY } from './kernel-capture.js';
import type { PcapRecord } from './pcap-read.js';

/** Per-capture summary used by the tests for extra assertions. */
export interface CheckSummary {
  /** Frames checked. */
  frames: number;
  /** Frames whose UDP checksum was the CHECKSUM_PARTIAL seed. */
  partialCsum: number;
  /** Frames with a fully valid non-zero UDP checksum. */
  fullCsum: number;
  /** Frames with a zero UDP checksum. */
  zeroCsum: number;
  /** Requests (A -> B) seen. */
  requests: number;
  /** GBP (id, flags) of requests in order. */
  gbp: Array<[number, number]>;
  /** Outer TOS of requests in order. */
  tos: number[];
  /** Inner TOS of requests in order. */
  innerTos: number[];
}

/** Decode and re-encode every record of a capture of `c`; returns counts for further assertions. */
export function checkCapture(records: PcapRecord[], c: KernelCase): CheckSummary {
  const sum: CheckSummary = { frames: 0, partialCsum: 0, fullCsum: 0, zeroCsum: 0, requests: 0, gbp: [], tos: [], innerTos: [] };
  const aIp = ipv4ToU32(UNDERLAY.aIp);
  const bIp = ipv4ToU32(UNDERLAY.bIp);
  const aMac = parseMac(UNDERLAY.aMac);
  const bMac = parseMac(UNDERLAY.bMac);
  const eth = new EthernetFrame();
  const ip = new Ipv4Packet();
  const udp = new UdpDatagram();
  const vx = new VxlanHeader();
  const ieth = new EthernetFrame();
  const iip = new Ipv4Packet();
  const icmp = new IcmpPacket();
  const res = new VxlanDecapResult();
  const slot = Buffer.alloc(HEADROOM + 2048);

  for (const rec of records) {
    const f = rec.data;
    expect(rec.origLen).toBe(f.length);
    sum.frames++;
    // Outer Ethernet.
    expect(eth.check(f, 0, f.length)).toBe('ok');
    expect(eth.hasVlan).toBe(false);
    expect(eth.etherType).toBe(EtherType.IPv4);
    const request = eth.src === aMac;
    expect(eth.src).toBe(request ? aMac : bMac);
    expect(eth.dst).toBe(request ? bMac : aMac);
    // Outer IPv4.
    expect(ip.check(f, ETH_HLEN, f.length - ETH_HLEN)).toBe('ok');
    expect(ip.version).toBe(4);
    expect(ip.headerLen).toBe(20);
    expect(ip.totalLength).toBe(f.length - ETH_HLEN);
    expect(ip.dontFragment).toBe(false);
    expect(ip.isFragment).toBe(false);
    expect(ip.ttl).toBe(64);
    expect(ip.protocol).toBe(IpProto.UDP);
    expect(ip.src).toBe(request ? aIp : bIp);
    expect(ip.dst).toBe(request ? bIp : aIp);
    expect(ip.verifyChecksum()).toBe(true);
    // Outer UDP.
    expect(udp.check(f, ip.payloadOffset, ip.payloadLength)).toBe('ok');
    expect(udp.dstPort).toBe(c.port);
    expect(udp.srcPort).toBeGreaterThanOrEqual(32768);
    expect(udp.srcPort).toBeLessThan(61000);
    expect(udp.length).toBe(ip.payloadLength);
    const seed = csumFold(pseudoSum4(ip.src, ip.dst, IpProto.UDP, udp.length));
    if (udp.checksum === 0) {
      sum.zeroCsum++;
      expect(c.udpcsum).toBe(false);
    } else if (udpVerify4(f, udp.off, ip.src, ip.dst)) {
      sum.fullCsum++;
      expect(c.udpcsum).toBe(true);
    } else {
      expect(udp.checksum).toBe(seed);
      sum.partialCsum++;
      expect(c.udpcsum).toBe(true);
    }
    // VXLAN.
    expect(vx.check(f, udp.payloadOffset, udp.payloadLength, c.vni)).toBe('ok');
    expect(vx.vni).toBe(c.vni);
    expect(f[udp.payloadOffset + 7]).toBe(0); // reserved
    if (!c.gbp) {
      expect(vx.flags).toBe(0x08);
      expect(vx.hasGbp).toBe(false);
    }
    // Inner frame: VTEP MACs, IPv4, ICMP echo.
    const innerOff = udp.payloadOffset + 8;
    const innerLen = f.length - innerOff;
    expect(innerOff).toBe(VXLAN_IPV4_OVERHEAD);
    expect(ieth.check(f, innerOff, innerLen)).toBe('ok');
    expect(ieth.src).toBe(parseMac(request ? c.aVtepMac : c.bVtepMac));
    expect(ieth.dst).toBe(parseMac(request ? c.bVtepMac : c.aVtepMac));
    expect(ieth.etherType).toBe(EtherType.IPv4);
    expect(iip.check(f, ieth.payloadOffset, ieth.payloadLength)).toBe('ok');
    expect(iip.src).toBe(ipv4ToU32(request ? c.aOverlay : c.bOverlay));
    expect(iip.dst).toBe(ipv4ToU32(request ? c.bOverlay : c.aOverlay));
    expect(iip.protocol).toBe(IpProto.ICMP);
    expect(icmp.check(f, iip.payloadOffset, iip.payloadLength)).toBe('ok');
    expect(icmp.type).toBe(request ? 8 : 0);
    // Kernel ECN encapsulation: outer ECN = inner ECN, CE -> ECT(0); DSCP 0 (tos not inherited).
    const iecn = iip.ecn;
    expect(ip.tos).toBe(iecn === 3 ? 2 : iecn);
    if (request) {
      sum.requests++;
      sum.tos.push(ip.tos);
      sum.innerTos.push(iip.tos);
      sum.gbp.push(vx.hasGbp ? [vx.gbpId, f[udp.payloadOffset + 1]!] : [0, 0]);
    }

    // Our decapsulation of the kernel frame.
    const opts = vxlanDecapOptions({ vni: c.vni, port: c.port, gbp: c.gbp, verifyUdpChecksum: false });
    expect(vxlanDecapFrame(f, 0, f.length, opts, res)).toBe('ok');
    expect(res.off).toBe(innerOff);
    expect(res.len).toBe(innerLen);
    expect(res.vni).toBe(c.vni);
    expect(res.outerSrcIp).toBe(ip.src);
    expect(res.outerDstIp).toBe(ip.dst);
    expect(res.outerSrcMac).toBe(eth.src);
    expect(res.outerDstMac).toBe(eth.dst);
    expect(res.srcPort).toBe(udp.srcPort);
    expect(res.dstPort).toBe(c.port);
    expect(res.ttl).toBe(64);
    expect(res.tos).toBe(ip.tos);
    if (c.gbp) {
      expect(res.gbp).toBe(vx.hasGbp);
      expect(res.gbpId).toBe(vx.hasGbp ? vx.gbpId : 0);
    }
    // Wrong VNI / port are rejected.
    expect(vxlanDecapFrame(f, 0, f.length, { ...opts, vni: (c.vni + 1) & 0xffffff }, res)).toBe('unexpected-vni');
    expect(vxlanDecapFrame(f, 0, f.length, { ...opts, port: c.port + 1 }, res)).toBe('bad-port');

    // Our full-form encapsulation of the same inner frame.
    slot.fill(0xee);
    f.copy(slot, HEADROOM, innerOff);
    const t = vxlanTunnel({
      vni: c.vni, dstPort: c.port, srcMac: eth.src, dstMac: eth.dst, srcIp: ip.src, dstIp: ip.dst,
      udpChecksum: c.udpcsum, gbp: c.gbp, ipId: ip.id,
      gbpId: c.gbp && vx.hasGbp ? vx.gbpId : 0, gbpFlags: c.gbp && vx.hasGbp ? f[udp.payloadOffset + 1]! : 0,
    });
    const start = vxlanEncapFull(slot, HEADROOM, innerLen, t);
    expect(start).toBe(HEADROOM - VXLAN_IPV4_OVERHEAD);
    const ours = slot.subarray(start, HEADROOM + innerLen);
    expect(ours.length).toBe(f.length);
    expect(t.ipId).toBe((ip.id + 1) & 0xffff);
    // Copy the fields the kernel picks: UDP source port (the IP ID was configured).
    const u = ETH_HLEN + 20;
    ours[u] = f[u]!;
    ours[u + 1] = f[u + 1]!;
    if (c.udpcsum) {
      udpFillChecksum4(ours, u, ip.src, ip.dst);
      expect(udpVerify4(ours, u, ip.src, ip.dst)).toBe(true);
      if (!udpVerify4(f, u, ip.src, ip.dst)) {
        // Kernel frame carries the offload seed; compare the rest.
        ours[u + 6] = f[u + 6]!;
        ours[u + 7] = f[u + 7]!;
      }
    }
    expect(ours.toString('hex')).toBe(f.toString('hex'));
  }
  return sum;
}
