/**
 * flannel's legacy UDP backend (flannel0): the UDP datagram payload on port 8285 is a
 * bare IPv4 packet. Before anything writes one to a TUN device it must be a
 * well-formed IPv4 header whose total length fits in the datagram; flannel's proxy
 * then decrements the TTL with an RFC 1624 incremental checksum update.
 */
import { ipv4Check, ipv4DecrementTtl, ipv4VerifyChecksum, type Ipv4Reason, type TtlResult } from './ip.js';

/** Why a flannel UDP-mode payload was rejected. */
export type FlannelUdpReason = Ipv4Reason;

/**
 * Validate a flannel UDP-mode payload `buf[off..off+len)`: version 4, IHL >= 5 and inside
 * the datagram, header length <= total length <= `len`, and (when `verifyChecksum`) the
 * header checksum. On 'ok' the packet is `buf[off..off+totalLength)` (read it with
 * {@link ipv4TotalLength}); trailing bytes beyond the total length are not part of it.
 */
export function flannelUdpValidate(buf: Uint8Array, off: number, len: number, verifyChecksum = false): 'ok' | FlannelUdpReason {
  const r = ipv4Check(buf, off, len);
  if (r !== 'ok') return r;
  if (verifyChecksum && !ipv4VerifyChecksum(buf, off)) return 'bad-checksum';
  return 'ok';
}

/**
 * flannel's forwarding step for a packet read from flannel0 or received from a peer:
 * decrement the TTL with the incremental checksum update (identical to a full
 * recomputation), or report 'ttl-exceeded' (packet untouched) when TTL <= 1.
 */
export function flannelDecrementTtl(buf: Uint8Array, off: number): TtlResult {
  return ipv4DecrementTtl(buf, off);
}

export { ipv4TotalLength } from './ip.js';
