/**
 * Wire constants: EtherTypes, IP protocol numbers, header sizes, VXLAN ports and VNIs.
 */

/** EtherType values (IEEE 802 numbers) used by the dataplane. */
export const EtherType = {
  /** Internet Protocol version 4. */
  IPv4: 0x0800,
  /** Address Resolution Protocol. */
  ARP: 0x0806,
  /** IEEE 802.1Q VLAN tag (TPID). */
  VLAN: 0x8100,
  /** IEEE 802.1ad service tag (QinQ outer TPID). */
  QINQ: 0x88a8,
  /** Internet Protocol version 6. */
  IPv6: 0x86dd,
} as const;

/** IP protocol numbers (IANA) used by the dataplane. */
export const IpProto = {
  /** IPv6 hop-by-hop options. */
  HOPOPT: 0,
  /** Internet Control Message Protocol (v4). */
  ICMP: 1,
  /** Transmission Control Protocol. */
  TCP: 6,
  /** User Datagram Protocol. */
  UDP: 17,
  /** IPv6 routing header. */
  IPV6_ROUTE: 43,
  /** IPv6 fragment header. */
  IPV6_FRAG: 44,
  /** Generic Routing Encapsulation. */
  GRE: 47,
  /** ICMP for IPv6. */
  ICMPV6: 58,
  /** IPv6 no next header. */
  IPV6_NONXT: 59,
  /** IPv6 destination options. */
  IPV6_OPTS: 60,
  /** Stream Control Transmission Protocol. */
  SCTP: 132,
} as const;

/** Ethernet II header length (no VLAN tag). */
export const ETH_HLEN = 14;
/** 802.1Q tag length. */
export const VLAN_HLEN = 4;
/** Minimum IPv4 header length. */
export const IPV4_HLEN = 20;
/** IPv6 base header length. */
export const IPV6_HLEN = 40;
/** UDP header length. */
export const UDP_HLEN = 8;
/** VXLAN header length. */
export const VXLAN_HLEN = 8;
/** ICMPv4 header length (type, code, checksum, 4 bytes rest-of-header). */
export const ICMP_HLEN = 8;
/** ARP payload length for Ethernet/IPv4. */
export const ARP_LEN = 28;

/** Overhead of socket-form VXLAN: the VXLAN header only. */
export const VXLAN_SOCKET_OVERHEAD = VXLAN_HLEN;
/** Overhead of full-form VXLAN over IPv4: Ethernet + IPv4 + UDP + VXLAN = 50 bytes. */
export const VXLAN_IPV4_OVERHEAD = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/** Overhead of full-form VXLAN over IPv6: Ethernet + IPv6 + UDP + VXLAN = 70 bytes. */
export const VXLAN_IPV6_OVERHEAD = ETH_HLEN + IPV6_HLEN + UDP_HLEN + VXLAN_HLEN;

/** UDP port the Linux kernel vxlan driver and flannel use by default. */
export const VXLAN_PORT_LINUX = 8472;
/** IANA-assigned VXLAN UDP port (RFC 7348). */
export const VXLAN_PORT_IANA = 4789;
/** UDP port of flannel's legacy UDP backend (flannel0). */
export const FLANNEL_UDP_PORT = 8285;
/** flannel's default VXLAN network identifier. */
export const VNI_FLANNEL_DEFAULT = 1;
/** Alias of {@link VNI_FLANNEL_DEFAULT}. */
export const VNI_DEFAULT = VNI_FLANNEL_DEFAULT;
/** Largest VNI (24 bits). */
export const VNI_MAX = 0xffffff;

/** Linux default `net.ipv4.ip_local_port_range` low end (the vxlan default source-port range). */
export const EPHEMERAL_PORT_MIN = 32768;
/** Linux default `net.ipv4.ip_local_port_range` high end (inclusive). */
export const EPHEMERAL_PORT_MAX = 60999;

/** ICMPv4 message types used by the dataplane. */
export const IcmpType = {
  /** Echo reply. */
  ECHO_REPLY: 0,
  /** Destination unreachable. */
  DEST_UNREACH: 3,
  /** Source quench (deprecated; still an error message). */
  SOURCE_QUENCH: 4,
  /** Redirect. */
  REDIRECT: 5,
  /** Echo request. */
  ECHO_REQUEST: 8,
  /** Time exceeded. */
  TIME_EXCEEDED: 11,
  /** Parameter problem. */
  PARAM_PROBLEM: 12,
} as const;

/** ICMPv4 codes for destination unreachable (type 3) and time exceeded (type 11). */
export const IcmpCode = {
  /** Dest unreachable: network unreachable. */
  NET_UNREACH: 0,
  /** Dest unreachable: host unreachable. */
  HOST_UNREACH: 1,
  /** Dest unreachable: fragmentation needed and DF set (carries next-hop MTU, RFC 1191). */
  FRAG_NEEDED: 4,
  /** Time exceeded: TTL exceeded in transit. */
  TTL_EXCEEDED: 0,
  /** Time exceeded: fragment reassembly time exceeded. */
  FRAG_TIME_EXCEEDED: 1,
} as const;

/** ARP opcodes. */
export const ArpOp = {
  /** ARP request. */
  REQUEST: 1,
  /** ARP reply. */
  REPLY: 2,
} as const;
