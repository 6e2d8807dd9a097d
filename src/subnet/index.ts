/**
 * Public exports of src/subnet (re-exported by src/index.ts): the etcd v3 client on etcd's JSON
 * gateway and flanneld's etcd subnet manager.
 */
export {
  EtcdClient,
  EtcdError,
  MAX_ETCD_RESPONSE_BYTES,
  MAX_WATCH_MESSAGE_BYTES,
  parseAuth,
  parseErrorBody,
  parseGrant,
  parseHeader,
  parseKv,
  parseRange,
  parseTxn,
  parseWatchEvent,
  parseWatchMessage,
  prefixEnd,
  type EtcdClientOptions,
  type EtcdErrorKind,
  type EtcdKv,
  type GrantResult,
  type Parsed,
  type RangeResult,
  type WatchEvent,
  type WatchHandle,
  type WatchHandlers,
  type WatchMessage,
} from './etcd-client.js';
export {
  DEFAULT_ETCD_PREFIX,
  EtcdSubnetManager,
  MAX_ETCD_VALUE_BYTES,
  SUBNET_TTL_SECONDS,
  freeSubnets,
  subnetFits,
  type EtcdManagerOptions,
  type EtcdStatus,
  type HeldLease,
  type PeersHandler,
} from './etcd-manager.js';
