/** Public exports of src/tun (re-exported by src/index.ts): batch contracts, TUN/TAP devices, UDP transports, rtnetlink. */
export * from './types.js';
export { TunDevice, TapDevice, VNET_HDR_LEN, type DeviceOptions, type PacketBatch } from './device.js';
export {
  MmsgUdpTransport, DgramUdpTransport, createTransport, UDP_GSO_MAX_SEGMENTS, UDP_GSO_MAX_BYTES,
  type TransportOptions, type SendResult,
} from './udp.js';
export {
  Rtnl, NUD, RT_SCOPE, RTN, RT_TABLE_MAIN, ipToBytes, bytesToIp, macToBytes, bytesToMac,
  type LinkRef, type LinkInfo, type LinkChange, type AddressInfo, type RouteSpec, type RouteInfo,
  type NeighSpec, type NeighInfo, type FdbSpec, type FdbInfo, type VxlanSpec, type NlSocketStats, type TunLinkInfo,
  NlMonitor, RTMGRP_LINK, RTMGRP_IPV4_IFADDR, type NlEvent, type MonitorGroups,
} from './rtnl.js';
export { OsError, errnoName } from './errors.js';
