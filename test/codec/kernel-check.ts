/**
 * Checks shared by the fixture and live kernel-capture tests: decode every field of
 * kernel-produced VXLAN frames and re-encapsulate the same inner frame with our full
 * form, then compare byte for byte (after copying the fields the kernel picks: IP ID,
 * UDP source port; over an IPv6 underlay the flow label instead of the IP ID).
 *
 * About the outer UDP checksum in a capture taken on the sending veth: with `udpcsum`
 * (the default on current kernels) the kernel leaves the skb CHECKSUM_PARTIAL, so the
 * field holds the folded pseudo-header sum (the offload seed), not the final checksum.
 * The check accepts either a fully valid checksum or exactly that seed. Over IPv6 the checksum
 * is never zero (RFC 6935: the kernel's VXLAN sends a real one unless `udp6zerocsumtx`).
 */
import { expect } from 'vitest';
import {
  ETH_HLEN, EtherType, EthernetFrame, IcmpPacket, IpProto, Ipv4Packet, Ipv6Packet, UdpDatagram, VxlanDecapResult,
  VxlanHeader, csumFold, ipv4ToU32, parseMac, pseudoSum4, pseudoSum6, udpFillChecksum4, udpFillChecksum6, udpVerify4, udpVerify6,
  vxlanDecapFrame, vxlanDecapOptions, vxlanEncapFull, vxlanTunnel, VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD,
} from '../../src/codec/index.js';
import { parseIpv6 } from '../../src/codec/addr.js';
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
  const v6 = c.underlay === 6;
  const aIp6 = parseIpv6(UNDERLAY.aIp6);
  const bIp6 = parseIpv6(UNDERLAY.bIp6);
  const eth = new EthernetFrame();
  const ip = new Ipv4Packet();
  const ip6 = new Ipv6Packet();
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
    expect(eth.etherType).toBe(v6 ? EtherType.IPv6 : EtherType.IPv4);
    const request = eth.src === aMac;
    expect(eth.src).toBe(request ? aMac : bMac);
    expect(eth.dst).toBe(request ? bMac : aMac);
    // Outer IPv6: the fields, then the UDP and the rest as over IPv4 (below).
    const u = ETH_HLEN + (v6 ? 40 : 20);
    let outerTos: number;
    let seed: number;
    let udpOk: boolean;
    if (v6) {
      expect(ip6.check(f, ETH_HLEN, f.length - ETH_HLEN)).toBe('ok');
      expect(ip6.payloadLength).toBe(f.length - u);
      expect(ip6.nextHeader).toBe(IpProto.UDP);
      expect(ip6.hopLimit).toBe(64);
      expect(Buffer.from(f.subarray(ip6.srcOffset, ip6.srcOffset + 16)).equals(Buffer.from(request ? aIp6 : bIp6))).toBe(true);
      expect(Buffer.from(f.subarray(ip6.dstOffset, ip6.dstOffset + 16)).equals(Buffer.from(request ? bIp6 : aIp6))).toBe(true);
      expect(udp.check(f, u, ip6.payloadLength)).toBe('ok');
      expect(udp.length).toBe(ip6.payloadLength);
      outerTos = ip6.trafficClass;
      seed = csumFold(pseudoSum6(f, ip6.srcOffset, ip6.dstOffset, IpProto.UDP, udp.length));
      udpOk = udpVerify6(f, u, f, ip6.srcOffset, ip6.dstOffset);
    } else {
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
      expect(udp.length).toBe(ip.payloadLength);
      outerTos = ip.tos;
      seed = csumFold(pseudoSum4(ip.src, ip.dst, IpProto.UDP, udp.length));
      udpOk = udpVerify4(f, udp.off, ip.src, ip.dst);
    }
    expect(udp.dstPort).toBe(c.port);
    expect(udp.srcPort).toBeGreaterThanOrEqual(32768);
    expect(udp.srcPort).toBeLessThan(61000);
    if (udp.checksum === 0) {
      sum.zeroCsum++;
      expect(c.udpcsum).toBe(false);
      expect(v6).toBe(false); // RFC 6935: never over IPv6 without udp6zerocsumtx
    } else if (udpOk) {
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
    expect(innerOff).toBe(v6 ? VXLAN_IPV6_OVERHEAD : VXLAN_IPV4_OVERHEAD);
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
    expect(outerTos).toBe(iecn === 3 ? 2 : iecn);
    if (request) {
      sum.requests++;
      sum.tos.push(outerTos);
      sum.innerTos.push(iip.tos);
      sum.gbp.push(vx.hasGbp ? [vx.gbpId, f[udp.payloadOffset + 1]!] : [0, 0]);
    }

    // Our decapsulation of the kernel frame.
    const opts = vxlanDecapOptions({ vni: c.vni, port: c.port, gbp: c.gbp, verifyUdpChecksum: false });
    expect(vxlanDecapFrame(f, 0, f.length, opts, res)).toBe('ok');
    expect(res.off).toBe(innerOff);
    expect(res.len).toBe(innerLen);
    expect(res.vni).toBe(c.vni);
    expect(res.family).toBe(v6 ? 6 : 4);
    if (v6) {
      expect(res.outerSrc6Off).toBe(ip6.srcOffset);
      expect(res.outerDst6Off).toBe(ip6.dstOffset);
    } else {
      expect(res.outerSrcIp).toBe(ip.src);
      expect(res.outerDstIp).toBe(ip.dst);
    }
    expect(res.outerSrcMac).toBe(eth.src);
    expect(res.outerDstMac).toBe(eth.dst);
    expect(res.srcPort).toBe(udp.srcPort);
    expect(res.dstPort).toBe(c.port);
    expect(res.ttl).toBe(64);
    expect(res.tos).toBe(outerTos);
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
      vni: c.vni, dstPort: c.port, srcMac: eth.src, dstMac: eth.dst,
      ...(v6 ? { family: 6, src6: request ? aIp6 : bIp6, dst6: request ? bIp6 : aIp6, flowLabel: ip6.flowLabel } : { srcIp: ip.src, dstIp: ip.dst, ipId: ip.id }),
      udpChecksum: c.udpcsum, gbp: c.gbp,
      gbpId: c.gbp && vx.hasGbp ? vx.gbpId : 0, gbpFlags: c.gbp && vx.hasGbp ? f[udp.payloadOffset + 1]! : 0,
    });
    const start = vxlanEncapFull(slot, HEADROOM, innerLen, t);
    expect(start).toBe(HEADROOM - (v6 ? VXLAN_IPV6_OVERHEAD : VXLAN_IPV4_OVERHEAD));
    const ours = slot.subarray(start, HEADROOM + innerLen);
    expect(ours.length).toBe(f.length);
    if (!v6) expect(t.ipId).toBe((ip.id + 1) & 0xffff);
    // Copy the fields the kernel picks: UDP source port (the IP ID, or the flow label, was configured).
    ours[u] = f[u]!;
    ours[u + 1] = f[u + 1]!;
    if (c.udpcsum) {
      const verify = (b: Buffer): boolean => (v6 ? udpVerify6(b, u, b, ETH_HLEN + 8, ETH_HLEN + 24) : udpVerify4(b, u, ip.src, ip.dst));
      if (v6) udpFillChecksum6(ours, u, ours, ETH_HLEN + 8, ETH_HLEN + 24);
      else udpFillChecksum4(ours, u, ip.src, ip.dst);
      expect(verify(ours)).toBe(true);
      if (!verify(f)) {
        // Kernel frame carries the offload seed; compare the rest.
        ours[u + 6] = f[u + 6]!;
        ours[u + 7] = f[u + 7]!;
      }
    }
    expect(ours.toString('hex')).toBe(f.toString('hex'));
  }
  return sum;
}
