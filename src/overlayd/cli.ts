/**
 * overlayd's command line: flag parsing (node:util parseArgs), `--help`, `--version`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, isIpv6, quoteUntrusted } from './config.js';
import { DEFAULT_OFFLOAD } from '../vtep/options.js';

/** Default path of the file the flannel CNI plugin reads. */
export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';
/** Default --healthz-ip: loopback (flannel's default is 0.0.0.0; we do not expose metrics to the network unless asked). */
export const DEFAULT_HEALTHZ_IP = '127.0.0.1';

/** flanneld's default --etcd-prefix. */
export const DEFAULT_ETCD_PREFIX_FLAG = '/coreos.com/network';

/** The etcd flags (etcd mode: `--etcd-endpoints` given). */
export interface EtcdCliOptions {
  /** --etcd-endpoints, split at commas. */
  endpoints: string[];
  /** --etcd-prefix. */
  prefix: string;
  /** --etcd-cafile. */
  caFile?: string;
  /** --etcd-certfile. */
  certFile?: string;
  /** --etcd-keyfile. */
  keyFile?: string;
  /** --etcd-username. */
  username?: string;
  /** --etcd-password. */
  password?: string;
  /** --subnet-lease-renew-margin, minutes. */
  renewMarginMinutes: number;
  /** --release-lease-on-exit: delete our lease from etcd on SIGTERM/SIGINT. */
  releaseOnExit: boolean;
}

/** Parsed command line. */
export interface CliOptions {
  /** --net-conf FILE (static mode: required). */
  netConf?: string;
  /** --subnet CIDR (static mode: required unless IPv6-only). */
  subnet?: string;
  /** --ipv6-subnet CIDR (static mode, net-conf EnableIPv6: this host's IPv6 subnet). */
  ipv6Subnet?: string;
  /** The etcd flags (etcd mode). */
  etcd?: EtcdCliOptions;
  /** --public-ip IP. */
  publicIp?: string;
  /** --public-ipv6 IP (PublicIPv6). */
  publicIpv6?: string;
  /** --iface NAME|IP (repeatable). */
  iface: string[];
  /** --iface-regex RE (repeatable). */
  ifaceRegex: string[];
  /** --iface-can-reach ADDR: the interface of the route to ADDR. */
  ifaceCanReach?: string;
  /** --peers FILE. */
  peers?: string;
  /** --subnet-file PATH. */
  subnetFile: string;
  /** --lease-out FILE. */
  leaseOut?: string;
  /** --transport. */
  transport: 'dgram' | 'mmsg';
  /** --offload (absent: the dataplane's default, DEFAULT_OFFLOAD). */
  offload?: 'auto' | 'off';
  /** --timing: per-stage latency histograms (stats, /metrics). */
  timing?: boolean;
  /** --busy-poll-us (0 = off). */
  busyPollUs?: number;
  /** --source-ports (source-port pool size). */
  sourcePorts?: number;
  /** --stats-interval SEC (0 = off). */
  statsInterval: number;
  /** --healthz-port (0 = off). */
  healthzPort: number;
  /** --healthz-ip. */
  healthzIp: string;
  /** --pcap FILE. */
  pcap?: string;
  /** --backend-module FILE (development: a module exporting a BackendFactory). */
  backendModule?: string;
  /** --peers-debounce-ms. */
  peersDebounceMs: number;
  /** --peers-max-wait-ms. */
  peersMaxWaitMs: number;
  /** --keep-device-on-exit: SIGTERM leaves the device, its address and routes for a planned restart. */
  keepDeviceOnExit?: boolean;
  /** --ip-masq (with --ip-masq-fully-random-disable and --iptables-resync). */
  ipMasq?: { fullyRandom: boolean; resyncSeconds: number };
  /** --no-supervisor: run the packet path in this process (no restart on a crash, no --takeover). */
  noSupervisor?: boolean;
  /** --takeover: take the device and socket over from the overlayd listening on the control socket. */
  takeover?: boolean;
  /** --control-socket PATH (default: defaultControlSocket(device)). */
  controlSocket?: string;
}

/** What the command line asks for. */
export type CliCommand = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; options: CliOptions };

/** The --help text (every flag). */
export const HELP = `Usage: overlayd --net-conf FILE --subnet CIDR [options]        (static)
       overlayd --etcd-endpoints URLS [options]                  (etcd, as flanneld)

Runs a flannel-compatible overlay dataplane (flannel0-style UDP, VXLAN, or host-gw
routes) on this host.
Needs CAP_NET_ADMIN. Stops and removes its device and routes on SIGTERM/SIGINT (and logs
what it removed); SIGHUP reloads the peers file. Its device is marked (alias "overlayd:...")
and persistent: after a crash it stays, with its routes, and the next start adopts it. A
device of the same name that is not overlayd's is refused (exit 2, nothing changed).

Configuration (flannel's formats):
  --net-conf FILE        flannel net-conf.json: {"Network": "198.19.0.0/16", "SubnetLen": 24,
                         "Backend": {"Type": "udp"|"vxlan"|"host-gw", "Port", "VNI", "GBP", "DirectRouting",
                         "MTU", "Learning"}}; dual stack: "EnableIPv6": true, "IPv6Network",
                         "IPv6SubnetLen" (default 64), "IPv6SubnetMin", "IPv6SubnetMax"; "EnableIPv4":
                         false for IPv6 only. (The dataplane does not forward IPv6 yet: overlayd
                         refuses EnableIPv6 at start, saying so.)
                         Defaults as flannel: Type udp; udp Port 8285; vxlan VNI 1, Port 8472;
                         MTU = underlay interface MTU - 28 (udp), - 50 (vxlan), - 0 (host-gw:
                         each peer's subnet routed via its public IP; every peer on our segment).
                         Keys match case-insensitively, as in flanneld; keys nobody reads are
                         logged as warnings.
  --subnet CIDR          this host's lease, a SubnetLen-long subnet inside Network (198.19.1.0/24)
  --ipv6-subnet CIDR     with EnableIPv6: this host's IPv6 lease, an IPv6SubnetLen-long subnet inside
                         IPv6Network (2001:2:0:1::/64); the peers file's dual-stack keys are
                         "198.19.2.0-24&2001:2:0:2::-64", with "PublicIPv6" and (vxlan) "BackendV6Data"
  --peers FILE           remote hosts in flannel's etcd layout: {"198.19.2.0-24": {"PublicIP": "198.18.0.2",
                         "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}}}
                         Watched: added, changed and removed peers take effect live. A file that
                         does not parse (mid-edit) is logged and the previous peers are kept.
  --subnet-file PATH     written at start with FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU,
                         FLANNEL_IPMASQ (and FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET with EnableIPv6)
                         for the CNI plugin (default ${DEFAULT_SUBNET_FILE})
  --lease-out FILE       also write this host's own lease, in the peers-file layout (it is
                         always printed as one JSON line on stdout at start)

etcd mode (flanneld's subnet manager; --net-conf, --subnet and --peers are then not used):
  --etcd-endpoints URLS  comma-separated etcd client URLs (http:// or https://); turns etcd mode on.
                         The network config is read from <prefix>/config (net-conf.json, with
                         SubnetMin/SubnetMax); this host leases a subnet under <prefix>/subnets/
                         (its own lease if one has our public IP, else the subnet in --subnet-file
                         if free, else a random free one; 24 h TTL, renewed) and applies the
                         other hosts' leases live.
  --etcd-prefix PATH     key prefix (default ${DEFAULT_ETCD_PREFIX_FLAG})
  --etcd-cafile FILE     CA bundle to verify etcd's certificate
  --etcd-certfile FILE   client certificate (TLS client authentication; with --etcd-keyfile)
  --etcd-keyfile FILE    client key
  --etcd-username NAME   etcd user (with --etcd-password)
  --etcd-password PASS   etcd password
  --subnet-lease-renew-margin MIN  renew the lease this many minutes before it expires (default 60)
  --release-lease-on-exit  delete our lease from etcd on SIGTERM/SIGINT (for a host leaving for
                         good; by default the lease stays, as flanneld leaves it, for the next start)

Underlay interface (as flanneld; default: the interface of the default route):
  --public-ip IP         address advertised to peers (default: the interface's first IPv4 address)
  --public-ipv6 IP       IPv6 address advertised to peers as PublicIPv6 with EnableIPv6 (default: the
                         interface's first global IPv6 address)
  --iface NAME|IP        interface to use, by name or address (repeatable: first that exists)
  --iface-regex RE       pick the first interface whose WHOLE address or name matches RE
                         (compiled as ^(?:RE)$, so "eth1|bond1" does not match "veth17f90f70");
                         repeatable. The choice and the reason are logged.
  --iface-can-reach ADDR the interface of the kernel's route to ADDR (as \`ip route get ADDR\`), with
                         that route's source address (when neither --iface nor --iface-regex is given)

Dataplane:
  --transport dgram|mmsg UDP socket implementation: node:dgram or batched recvmmsg/sendmmsg (default mmsg)
  --offload auto|off     kernel offloads (default ${DEFAULT_OFFLOAD}): auto opens the TUN with TSO/USO and
                         checksum offload (super-packets segmented here, TCP coalesced into super-
                         packets for the kernel) and uses UDP GSO/GRO on the mmsg socket; falls back
                         to plain I/O when the kernel refuses (logged). off: one packet at a time.
                         TAP (L2) devices never use offloads; the dgram transport has no GSO/GRO.
  --timing               time every batch at each pipeline stage (device read, encapsulation, send;
                         kernel receive to wake-up, read, decapsulation, device write) and export
                         the quantiles on /metrics (overlayd_stage_latency_microseconds); for
                         finding where latency goes, costs a few clock reads per batch
  --busy-poll-us N       after each batch keep reading the device and socket without sleeping until
                         nothing came for N microseconds (lower round-trip latency, for up to N µs
                         of CPU after every batch; default 0: off)
  --source-ports N       send each inner flow from one of N sockets on ephemeral ports (picked by a
                         hash of the flow, as the kernel's VXLAN device picks per-flow source ports,
                         so ECMP fabrics spread the tunnels); 0: every datagram from the backend's
                         port (default: vxlan 16, udp 0 as flanneld; at most 64)
  --pcap FILE            capture inner (overlay) and outer (underlay UDP) packets to FILE
                         (pcap, LINKTYPE_RAW; pcapng with per-direction flags if FILE ends in .pcapng)

IP masquerade (as flanneld):
  --ip-masq              masquerade traffic from the pod network to outside the cluster network
                         (flannel's rules, as one nftables table "ip overlayd" applied atomically
                         with nft; removed on stop; subnet.env gets FLANNEL_IPMASQ=true)
  --ip-masq-fully-random-disable  plain masquerade instead of masquerade fully-random
  --iptables-resync SEC  check the table every SEC seconds, re-apply it when removed (default 5)

Observability:
  --stats-interval SEC   log a one-line stats summary every SEC seconds (default 0: off)
  --healthz-port PORT    serve GET /healthz ("ok" while forwarding), GET /readyz (200 once the lease is
                         held and subnet.env written; 503 while etcd holds no lease of ours) and
                         GET /metrics (Prometheus text) (default 0: off)
  --healthz-ip IP        address for the healthz/metrics server (default ${DEFAULT_HEALTHZ_IP})

Restarts:
  --keep-device-on-exit  on SIGTERM/SIGINT keep the device, its address and routes (for a planned
                         restart: the next overlayd adopts them and forwards at once; the kernel
                         drops overlay packets in between)

Supervision and upgrades:
  By default overlayd is two processes: a supervisor that opens the tunnel device, the UDP
  socket and the healthz socket and holds them, and a packet process that forwards on them.
  If the packet process dies, the supervisor starts a new one on the same descriptors at once
  (the device, its address and routes stay; packets wait in the device queue and the socket
  buffer); after 5 deaths within 30 s it gives up and exits 1 (the marked device stays, for the
  next overlayd to adopt).
  --no-supervisor        one process: the packet path runs in overlayd itself (also the case with
                         --transport dgram or --backend-module, whose descriptors cannot be handed on)
  --control-socket PATH  Unix socket the supervisor listens on for --takeover
                         (default /run/overlayd/<device>.sock, e.g. /run/overlayd/flannel.1.sock;
                         in a network namespace other than the host's /run/overlayd/netns-<inode>/<device>.sock)
  --takeover             upgrade without loss: take the device and sockets over from the overlayd
                         listening on the control socket (same device and port); the old one exits
                         once this one forwards

Other:
  --peers-debounce-ms MS wait this long after a change to the peers file before reloading (default 200)
  --peers-max-wait-ms MS but reload at least this often while changes keep coming (default 2000)
  --backend-module FILE  development: load the Backend from an ES module whose default export is a
                         factory (params) => Backend, instead of src/vtep's UdpBackend/VxlanBackend
  -h, --help             show this help
  -V, --version          print the version

Environment: as flanneld, every flag (but --help and --version) is also read from
FLANNELD_<FLAG> (upper case, dashes as underscores: FLANNELD_ETCD_ENDPOINTS, FLANNELD_IP_MASQ=true)
when the command line does not give it; a switch takes true/false/1/0.

Exit status: 0 after a clean stop (or a handover to --takeover); 2 on bad configuration (one-line
error on stderr, nothing left behind); 1 on a runtime failure (the supervisor giving up included).
`;

/** overlayd's version (package.json's). */
export function version(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'overlay-dataplane' && pkg.version) return pkg.version;
    } catch {
      /* try the next */
    }
  }
  return '0.0.0';
}

function intFlag(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new ConfigError(`--${name} "${v}" must be an integer in ${min}..${max}`);
  return Number(v);
}

/** Every flag (node:util parseArgs options). */
const OPTIONS = {
  'net-conf': { type: 'string' },
  subnet: { type: 'string' },
  'public-ip': { type: 'string' },
  'public-ipv6': { type: 'string' },
  'ipv6-subnet': { type: 'string' },
  iface: { type: 'string', multiple: true },
  'iface-regex': { type: 'string', multiple: true },
  'iface-can-reach': { type: 'string' },
  peers: { type: 'string' },
  'subnet-file': { type: 'string' },
  'lease-out': { type: 'string' },
  transport: { type: 'string' },
  offload: { type: 'string' },
  timing: { type: 'boolean' },
  'busy-poll-us': { type: 'string' },
  'source-ports': { type: 'string' },
  'stats-interval': { type: 'string' },
  'healthz-port': { type: 'string' },
  'healthz-ip': { type: 'string' },
  pcap: { type: 'string' },
  'backend-module': { type: 'string' },
  'peers-debounce-ms': { type: 'string' },
  'peers-max-wait-ms': { type: 'string' },
  'etcd-endpoints': { type: 'string' },
  'etcd-prefix': { type: 'string' },
  'etcd-cafile': { type: 'string' },
  'etcd-certfile': { type: 'string' },
  'etcd-keyfile': { type: 'string' },
  'etcd-username': { type: 'string' },
  'etcd-password': { type: 'string' },
  'subnet-lease-renew-margin': { type: 'string' },
  'release-lease-on-exit': { type: 'boolean' },
  'keep-device-on-exit': { type: 'boolean' },
  'no-supervisor': { type: 'boolean' },
  takeover: { type: 'boolean' },
  'control-socket': { type: 'string' },
  'ip-masq': { type: 'boolean' },
  'ip-masq-fully-random-disable': { type: 'boolean' },
  'iptables-resync': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/**
 * Flags also read from FLANNELD_* environment variables when the command line does not give
 * them: every flag but --help and --version (flanneld reads each of its flags so).
 */
export const ENV_FLAGS: readonly string[] = Object.keys(OPTIONS).filter((f) => f !== 'help' && f !== 'version');

/** flanneld's environment name of a flag: FLANNELD_ + upper case, dashes as underscores. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Parse argv (without node and script); flags absent from argv are taken from FLANNELD_*
 * variables of `env` (see {@link ENV_FLAGS}). Throws ConfigError on unknown flags, missing or
 * malformed values.
 */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv = {}): CliCommand {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: OPTIONS,
    }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message.split('\n')[0]} (see --help)`);
  }
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const v = values as Record<string, string | boolean | string[] | undefined>;
  for (const f of ENV_FLAGS) {
    const e = env[envName(f)];
    if (v[f] !== undefined || e === undefined || e === '') continue;
    const spec: { type: string; multiple?: boolean } = OPTIONS[f as keyof typeof OPTIONS];
    if (spec.type === 'boolean') {
      if (!/^(true|false|1|0)$/i.test(e)) throw new ConfigError(`${envName(f)}="${e}" must be true or false`);
      v[f] = /^(true|1)$/i.test(e);
    } else {
      v[f] = spec.multiple === true ? [e] : e;
    }
  }
  const endpoints = values['etcd-endpoints'];
  let etcd: EtcdCliOptions | undefined;
  if (endpoints !== undefined) {
    for (const f of ['net-conf', 'subnet', 'ipv6-subnet', 'peers'] as const) {
      if (values[f] !== undefined) throw new ConfigError(`--${f} is for static setups; with --etcd-endpoints the ${f === 'net-conf' ? 'network config comes from <prefix>/config' : f === 'peers' ? 'peers come from etcd' : 'subnet is leased from etcd'}`);
    }
    const list = endpoints.split(',').map((x) => x.trim()).filter(Boolean);
    if (list.length === 0) throw new ConfigError('--etcd-endpoints is empty');
    const prefix = values['etcd-prefix'] ?? DEFAULT_ETCD_PREFIX_FLAG;
    if (!prefix.startsWith('/')) throw new ConfigError(`--etcd-prefix "${prefix}" must start with /`);
    etcd = { endpoints: list, prefix, renewMarginMinutes: intFlag('subnet-lease-renew-margin', values['subnet-lease-renew-margin'], 60, 1, 1439), releaseOnExit: values['release-lease-on-exit'] ?? false };
    if (values['etcd-cafile'] !== undefined) etcd.caFile = values['etcd-cafile'];
    if (values['etcd-certfile'] !== undefined) etcd.certFile = values['etcd-certfile'];
    if (values['etcd-keyfile'] !== undefined) etcd.keyFile = values['etcd-keyfile'];
    if (values['etcd-username'] !== undefined) etcd.username = values['etcd-username'];
    if (values['etcd-password'] !== undefined) etcd.password = values['etcd-password'];
    if ((etcd.certFile === undefined) !== (etcd.keyFile === undefined)) throw new ConfigError('--etcd-certfile and --etcd-keyfile go together');
    if (etcd.username !== undefined && etcd.password === undefined) throw new ConfigError('--etcd-username needs --etcd-password');
  } else {
    for (const f of ['etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password', 'subnet-lease-renew-margin', 'release-lease-on-exit'] as const) {
      if (values[f] !== undefined && argv.some((a) => a === `--${f}` || a.startsWith(`--${f}=`))) throw new ConfigError(`--${f} needs --etcd-endpoints`);
    }
    if (!values['net-conf']) throw new ConfigError('--net-conf FILE is required (see --help), or --etcd-endpoints for etcd mode');
    if (!values.subnet && !values['ipv6-subnet']) throw new ConfigError('--subnet CIDR is required (see --help), or --etcd-endpoints for etcd mode');
  }
  const transport = values.transport ?? 'mmsg';
  if (transport !== 'dgram' && transport !== 'mmsg') throw new ConfigError(`--transport "${transport}" must be "dgram" or "mmsg"`);
  const offload = values.offload;
  if (offload !== undefined && offload !== 'auto' && offload !== 'off') throw new ConfigError(`--offload "${offload}" must be "auto" or "off"`);
  const opts: CliOptions = {
    iface: values.iface ?? [],
    ifaceRegex: values['iface-regex'] ?? [],
    subnetFile: values['subnet-file'] ?? DEFAULT_SUBNET_FILE,
    transport,
    statsInterval: intFlag('stats-interval', values['stats-interval'], 0, 0, 86400),
    healthzPort: intFlag('healthz-port', values['healthz-port'], 0, 0, 65535),
    healthzIp: values['healthz-ip'] ?? DEFAULT_HEALTHZ_IP,
    peersDebounceMs: intFlag('peers-debounce-ms', values['peers-debounce-ms'], 200, 0, 60000),
    peersMaxWaitMs: intFlag('peers-max-wait-ms', values['peers-max-wait-ms'], 2000, 1, 600000),
  };
  if (offload !== undefined) opts.offload = offload;
  if (values.timing === true) opts.timing = true;
  if (values['busy-poll-us'] !== undefined) opts.busyPollUs = intFlag('busy-poll-us', values['busy-poll-us'], 0, 0, 1_000_000);
  if (values['source-ports'] !== undefined) opts.sourcePorts = intFlag('source-ports', values['source-ports'], 16, 0, 64);
  if (values['net-conf'] !== undefined) opts.netConf = values['net-conf'];
  if (values.subnet !== undefined) opts.subnet = values.subnet;
  if (etcd !== undefined) opts.etcd = etcd;
  if (values['public-ip'] !== undefined) opts.publicIp = values['public-ip'];
  const pub6 = values['public-ipv6'];
  if (pub6 !== undefined) {
    if (!isIpv6(pub6)) throw new ConfigError(`--public-ipv6 ${quoteUntrusted(pub6)} is not an IPv6 address`);
    opts.publicIpv6 = pub6;
  }
  if (values['ipv6-subnet'] !== undefined) opts.ipv6Subnet = values['ipv6-subnet'];
  if (values['iface-can-reach'] !== undefined) opts.ifaceCanReach = values['iface-can-reach'];
  if (values.peers !== undefined) opts.peers = values.peers;
  if (values['lease-out'] !== undefined) opts.leaseOut = values['lease-out'];
  if (values.pcap !== undefined) opts.pcap = values.pcap;
  if (values['backend-module'] !== undefined) opts.backendModule = values['backend-module'];
  if (v['keep-device-on-exit'] === true) opts.keepDeviceOnExit = true;
  const resync = intFlag('iptables-resync', values['iptables-resync'], 5, 0, 86400);
  if (values['ip-masq'] === true) opts.ipMasq = { fullyRandom: values['ip-masq-fully-random-disable'] !== true, resyncSeconds: resync };
  if (v['no-supervisor'] === true) opts.noSupervisor = true;
  if (v.takeover === true) {
    if (opts.noSupervisor) throw new ConfigError('--takeover needs the supervisor (not --no-supervisor)');
    opts.takeover = true;
  }
  if ((v['control-socket'] as string | undefined) !== undefined) {
    if ((v['control-socket'] as string | undefined) === '') throw new ConfigError('--control-socket is empty');
    opts.controlSocket = (v['control-socket'] as string | undefined);
  }
  return { kind: 'run', options: opts };
}
