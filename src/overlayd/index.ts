/**
 * Public exports of src/overlayd (re-exported by src/index.ts): the configuration
 * parsers in flannel's formats, interface selection, the capture writer, metrics,
 * and the daemon itself. The CLI entry point is src/overlayd/main.ts (bin `overlayd`).
 */
export {
  ConfigError,
  parseNetConf,
  validateSubnet,
  parsePeers,
  PeersParse,
  firstOverlap,
  quoteUntrusted,
  MAX_PEERS_FILE_BYTES,
  parseLeaseAttrs,
  diffPeers,
  leaseEquals,
  leaseToEtcd,
  leaseToJson,
  keyToSubnet,
  subnetToKey,
  parseLeaseKey,
  leaseKey,
  leaseNetworks,
  isIpv6OnlyLease,
  addrToBig,
  bigToAddr,
  isIpv6,
  renderSubnetEnv,
  parseEnvFile,
  gatewayForm,
  type BackendType,
  type BackendConf,
  type NetConf,
  type LeaseAttrs,
  type LeaseKey,
  type LeaseNetworks,
  type SubnetRange,
  type VxlanLeaseData,
  type PeerDiff,
  type SubnetEnv,
} from './config.js';
export { compileIfaceRegex, pickInterface, ifaceIpv6, kernelRouteGet, type RouteGet, listInterfaces, listInterfacesFrom, type IfaceInfo, type IfacePick, type IfaceRequest } from './iface.js';
export { tapIo } from './tap-io.js';
export { PcapWriter, type PacketTap, type TapDirection, type PcapWriterOptions } from './pcap.js';
export { createMetrics, startHttp, formatStatsLine, UNDERLAY_EVENTS, type InfoLabels } from './metrics.js';
export { defaultBackendFactory, toBackendOptions, stableVtepMac, ipv6Refusal, type BackendFactory, type BackendParams } from './backend-factory.js';
export { HELP, parseCli, envName, ENV_FLAGS, type CliOptions, type CliCommand, type EtcdCliOptions } from './cli.js';
export { Overlayd, resolveConfig, resolveEtcdConfig, previousSubnet, hasNetAdmin, devicesOf, underlaySockets, type DaemonConfig, type EtcdResolveOptions, type Logger, type OverlaydOptions } from './daemon.js';
export { DeviceOwnership, ownerMark, deviceNameFor, devicesFor, inspectDevice, describeDevice, describeLink, reconcileAdopted, OWNER_PREFIX, type DeviceVerdict, type DeviceState, type Reconciled, type OwnedDevice, type OwnNetworks } from './ownership.js';
export { UnderlayWatch, type UnderlayOptions, type UnderlayStatus } from './underlay.js';
export { sdNotify } from './sdnotify.js';
export { IpMasq, masqRuleset, masqTables, IPMASQ_TABLE, type IpMasqOptions, type IpMasqRules } from './ipmasq.js';
export { runSupervisor, supervised, packetProcess, InheritedIo, defaultControlSocket, PACKET_ENV, MAX_DEATHS, DEATH_WINDOW_MS, MAX_BACKOFF_MS, DEVICE_TXQUEUELEN, type PacketProcess } from './supervisor.js';
