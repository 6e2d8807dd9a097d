/**
 * Public exports of src/codec (re-exported by src/index.ts): the zero-copy wire codec.
 *
 * Every header is a checked view over bytes at an offset (`check()` returns 'ok' or a
 * typed reason), with field getters/setters and an `emit*` function. Nothing on the
 * per-packet path allocates: addresses are numbers (IPv4 uint32, MAC 48-bit), results
 * go into caller-owned objects, and encapsulation works in place in slot headroom.
 */
export * from './addr.js';
export {
  EtherType, IpProto, ETH_HLEN, VLAN_HLEN, IPV4_HLEN, IPV6_HLEN, UDP_HLEN, VXLAN_HLEN, ICMP_HLEN, ARP_LEN,
  VXLAN_SOCKET_OVERHEAD, VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD, VXLAN_PORT_LINUX, VXLAN_PORT_IANA, FLANNEL_UDP_PORT,
  VNI_FLANNEL_DEFAULT, VNI_DEFAULT, VNI_MAX, EPHEMERAL_PORT_MIN, EPHEMERAL_PORT_MAX, IcmpType, IcmpCode, ArpOp,
} from './constants.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './ip.js';
export * from './icmp.js';
export * from './icmp6.js';
export * from './vxlan.js';
export { flannelUdpValidate, flannelDecrementTtl, type FlannelUdpReason } from './flannel.js';
export * from './virtio.js';
export * from './l4.js';
export * from './gso.js';
export * from './gro.js';
