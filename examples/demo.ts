/**
 * `npm run demo` (as root): three namespace hosts on a shared underlay (198.18.0.0/24),
 * overlay 198.19.0.0/16, overlayd on each (UDP backend by default).
 *
 * By default the hosts join as a real cluster does: the demo starts its own etcd (Debian's
 * etcd-server) in the underlay's hub namespace at 198.18.0.254, writes the network config to
 * /coreos.com/network/config with etcdctl, and starts each overlayd with nothing but
 * --etcd-endpoints (no --subnet, no --peers): each leases a free /24 in etcd and learns the
 * others' leases from its watch. The demo prints each host's lease as etcd holds it (key, etcd
 * lease TTL) next to the subnet.env overlayd wrote. With `--static`, the old static set-up: leases
 * 198.19.1.0/24, .2.0/24, .3.0/24 given with --subnet and a peers file the demo fills in.
 *
 * With `-- --backend vxlan`, host 3 is the Linux kernel's own VXLAN device configured exactly as
 * flannel configures flannel.1 (VNI 1, port 8472, nolearning; route via X onlink, permanent
 * neighbour, bridge fdb append dst), so our VTEP talks to the kernel's; in etcd mode the demo
 * plays flanneld for that host (its lease written to etcd under a 24 h etcd lease, flannel.1
 * set up from the others' leases in etcd).
 *
 * Each host gets a "cni0" bridge holding FLANNEL_SUBNET from its subnet.env (the pod gateway
 * flannel's CNI plugin would create). The demo pings every ordered pair between those addresses,
 * runs a short iperf3 TCP transfer, prints a summary table (RTT, throughput, counters from each
 * overlayd's /metrics), and removes everything (namespaces, etcd and its data, files) in
 * `finally`, also on Ctrl-C.
 *
 * With `-- --dual-stack` (issue #15), the network is flannel's dual stack: EnableIPv6 with
 * IPv6Network 2001:2:0:8000::/49, every host gets an IPv6 underlay address (2001:2:0:1::N) and
 * leases an IPv6 subnet beside its IPv4 one; the backend defaults to vxlan there, so hosts 1 and 2
 * run overlayd with flannel.1 + flannel-v6.1 and host 3 is the kernel configured as flanneld
 * configures dual stack (kernel flannel.1 over IPv4 and flannel-v6.1 over IPv6, per family:
 * route, neighbour, FDB). Every pair pings and transfers over both families.
 *
 * Flags: --backend udp|vxlan (udp; vxlan with --dual-stack), --transport dgram|mmsg (mmsg),
 * --seconds N (3), --static (no etcd: --subnet and a peers file), --dual-stack (IPv4 and IPv6),
 * --verbose (print overlayd logs).
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Testbed, sh, type NsHost } from './lib/netns.js';
import { DEMO_TOOLS, ETCD_TOOLS, missingToolsLine } from './lib/need.js';
import { startEtcd, type LocalEtcd } from './lib/etcd.js';
import { addonPath } from '../src/tun/native.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HEALTHZ_PORT = 9707;
/** etcd in the hub (the underlay bridge's namespace), and flannel's key prefix. */
const ETCD_IP = '198.18.0.254';
const PREFIX = '/coreos.com/network';
/** flanneld's etcd lease for a subnet: 24 h. */
const LEASE_TTL_S = 86400;
/** --dual-stack: the IPv6 overlay (inside 2001:2::/48, flannel's default /64 subnets) and host N's IPv6 underlay address. */
const NET6 = '2001:2:0:8000::/49';
const underlay6 = (n: number): string => `2001:2:0:1::${n}`;

interface Host {
  n: number;
  ns: NsHost;
  underlay: string;
  /** This host's subnet (198.19.7.0/24): given (--static) or leased from etcd. */
  subnet?: string;
  /** FLANNEL_SUBNET's address from subnet.env (198.19.7.1): the cni0 gateway pinged. */
  gw?: string;
  /** --dual-stack: the IPv6 subnet (given or leased) and FLANNEL_IPV6_SUBNET's address (the IPv6 gateway). */
  subnet6?: string;
  gw6?: string;
  kind: 'overlayd' | 'kernel';
  dir: string;
  child?: ChildProcess;
  log: string;
  lease?: Record<string, unknown>;
  exitCode?: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function usage(): never {
  process.stdout.write('usage: npm run demo -- [--backend udp|vxlan] [--transport dgram|mmsg] [--seconds N] [--static] [--dual-stack] [--verbose]\n'
    + '  default: etcd in a hub namespace, each overlayd leases its subnet with --etcd-endpoints;\n'
    + '  --static: no etcd, fixed subnets (--subnet) and a peers file;\n'
    + '  --dual-stack: IPv4 and IPv6 (EnableIPv6), vxlan unless --backend says otherwise\n');
  process.exit(0);
}

function parse(): { backend: 'udp' | 'vxlan'; transport: 'dgram' | 'mmsg'; seconds: number; static: boolean; dualStack: boolean; verbose: boolean } {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string' },
      'dual-stack': { type: 'boolean', default: false },
      transport: { type: 'string', default: 'mmsg' },
      seconds: { type: 'string', default: '3' },
      static: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) usage();
  const dualStack = values['dual-stack'] ?? false;
  const backend = values.backend ?? (dualStack ? 'vxlan' : 'udp');
  const transport = values.transport;
  if (backend !== 'udp' && backend !== 'vxlan') throw new Error(`--backend must be udp or vxlan, got ${backend}`);
  if (transport !== 'dgram' && transport !== 'mmsg') throw new Error(`--transport must be dgram or mmsg, got ${transport}`);
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 60)) throw new Error('--seconds must be in 1..60');
  return { backend, transport, seconds, static: values.static ?? false, dualStack, verbose: values.verbose ?? false };
}

/** overlayd entry: built dist when present and newer, else the TypeScript source through tsx. */
function overlaydCommand(): string[] {
  const src = join(ROOT, 'src/overlayd/main.ts');
  return [process.execPath, '--import', 'tsx', src];
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(path + '.tmp', text);
  renameSync(path + '.tmp', path);
}

async function waitFor<T>(what: string, ms: number, f: () => T | undefined, alive?: () => string | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    const dead = alive?.();
    if (dead) throw new Error(`${what}: ${dead}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function tail(file: string, n = 8): string {
  try { return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join('\n'); } catch { return ''; }
}

interface PingResult { from: number; to: number; sent: number; received: number; avg?: number; max?: number; v6?: boolean }

/** The gateway of `h` pinged and transferred to: IPv4's, or (`v6`) IPv6's. */
const gwOf = (h: Host, v6: boolean): string => (v6 ? h.gw6! : h.gw!);

function ping(from: Host, to: Host, count: number, v6 = false): PingResult {
  let out = '';
  try {
    out = from.ns.exec('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', '-I', gwOf(from, v6), gwOf(to, v6)], { timeout: 30_000 });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const r = /= [\d.]+\/([\d.]+)\/([\d.]+)\//.exec(out);
  const res: PingResult = { from: from.n, to: to.n, sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0, v6 };
  if (r) { res.avg = Number(r[1]); res.max = Number(r[2]); }
  return res;
}

interface TcpResult { from: number; to: number; mbps?: number; bytes?: number; retrans?: number; error?: string; v6?: boolean }

async function tcp(client: Host, server: Host, seconds: number, v6 = false): Promise<TcpResult> {
  const srv = server.ns.spawn('iperf3', ['-s', '-1', '-B', gwOf(server, v6), '-p', '5201'], { stdio: 'ignore' });
  try {
    await sleep(300);
    const out = client.ns.exec('iperf3', ['-c', gwOf(server, v6), '-B', gwOf(client, v6), '-p', '5201', '-t', String(seconds), '-J', '--connect-timeout', '3000'], { timeout: (seconds + 15) * 1000 });
    const j = JSON.parse(out) as { end?: { sum_received?: { bits_per_second: number; bytes: number }; sum_sent?: { retransmits?: number } }; error?: string };
    if (j.error) return { from: client.n, to: server.n, error: j.error, v6 };
    return { from: client.n, to: server.n, mbps: (j.end?.sum_received?.bits_per_second ?? 0) / 1e6, bytes: j.end?.sum_received?.bytes ?? 0, retrans: j.end?.sum_sent?.retransmits ?? 0, v6 };
  } catch (e) {
    const s = String((e as { stdout?: string }).stdout ?? '');
    let msg = (e as Error).message.split('\n')[0]!;
    try { msg = (JSON.parse(s) as { error?: string }).error ?? msg; } catch { /* not JSON */ }
    return { from: client.n, to: server.n, error: msg, v6 };
  } finally {
    try { srv.kill('SIGKILL'); } catch { /* gone */ }
  }
}

/** Scrape an overlayd's /metrics from inside its namespace. */
function metrics(h: Host): Map<string, number> {
  const out = new Map<string, number>();
  try {
    const text = h.ns.exec(process.execPath, ['-e', `fetch('http://127.0.0.1:${HEALTHZ_PORT}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))`], { timeout: 10_000 });
    for (const line of text.split('\n')) {
      const m = /^(overlayd_[a-z_]+(?:\{[^}]*\})?) ([\d.e+-]+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
  } catch { /* daemon gone */ }
  return out;
}

/** Kernel counters of `dev` (flannel.1, flannel-v6.1) for the kernel host. */
function kernelCounters(h: Host, dev = 'flannel.1'): { tx: number; rx: number; drops: number } {
  const j = JSON.parse(h.ns.ip('-j', '-s', 'link', 'show', dev)) as { stats64: { tx: { packets: number; dropped: number }; rx: { packets: number; dropped: number } } }[];
  const s = j[0]!.stats64;
  return { tx: s.tx.packets, rx: s.rx.packets, drops: s.tx.dropped + s.rx.dropped };
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => '| ' + r.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |';
  const sep = '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|';
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}

/** A lease as etcd holds it: key, value, and the etcd lease it is bound to. */
interface EtcdLease {
  key: string;
  value: { PublicIP?: string; PublicIPv6?: string | null; BackendType?: string; BackendData?: { VtepMAC?: string } | null; BackendV6Data?: { VtepMAC?: string } | null };
  /** etcd lease ID in hex ('' for a key without one), its TTL and the seconds left. */
  leaseId: string;
  ttl?: number;
  left?: number;
}

/** Every key under <prefix>/subnets/, with its etcd lease's TTL (etcdctl in the hub). */
function etcdLeases(etcd: LocalEtcd): EtcdLease[] {
  // lease IDs are int64: keep them as strings (JSON numbers would round them)
  const text = etcd.ctl('get', '--prefix', `${PREFIX}/subnets/`, '-w', 'json').replace(/"lease":(\d+)/g, '"lease":"$1"');
  const kvs = (JSON.parse(text) as { kvs?: { key: string; value: string; lease?: string }[] }).kvs ?? [];
  return kvs.map((kv) => {
    const l: EtcdLease = {
      key: Buffer.from(kv.key, 'base64').toString().slice(`${PREFIX}/subnets/`.length),
      value: JSON.parse(Buffer.from(kv.value, 'base64').toString()) as EtcdLease['value'],
      leaseId: kv.lease ? BigInt(kv.lease).toString(16) : '',
    };
    if (l.leaseId) {
      const m = /TTL\((-?\d+)s\), remaining\((-?\d+)s\)/.exec(etcd.ctl('lease', 'timetolive', l.leaseId));
      if (m) { l.ttl = Number(m[1]); l.left = Number(m[2]); }
    }
    return l;
  });
}

async function main(): Promise<number> {
  const opts = parse();
  // what the machine lacks, in one line each, before anything is created
  const missing = missingToolsLine(undefined, opts.static ? DEMO_TOOLS : { ...DEMO_TOOLS, ...ETCD_TOOLS });
  if (missing !== undefined) {
    // only etcd missing: the static set-up still runs
    const etcdOnly = !opts.static && missingToolsLine(undefined, DEMO_TOOLS) === undefined;
    process.stderr.write(`demo: ${missing}${etcdOnly ? ' (or without etcd: npm run demo -- --static)' : ''}\n`);
    return 2;
  }
  try {
    addonPath();
  } catch {
    process.stderr.write('demo: the native addon is not built: run `npm ci` (it builds it with python3, make and g++: apt-get install -y python3 make g++)\n');
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: must run as root (it creates network namespaces)\n');
    return 2;
  }
  const tb = new Testbed('dm');
  const work = join(tmpdir(), tb.prefix);
  let cleaning: Promise<void> | undefined;
  const hosts: Host[] = [];
  let etcd: LocalEtcd | undefined;
  // Memoized: the interrupted main flow and the signal handler both await the same cleanup.
  const cleanup = (): Promise<void> => (cleaning ??= (async () => {
    for (const h of hosts) {
      if (h.child && h.child.exitCode === null && h.child.signalCode === null) {
        h.child.kill('SIGTERM');
        const c = h.child;
        h.exitCode = await Promise.race([new Promise<number | null>((r) => c.once('exit', (code) => r(code))), sleep(5000).then(() => null)]);
      } else if (h.child) {
        h.exitCode = h.child.exitCode;
      }
    }
    await etcd?.stop();
    tb.destroy();
    rmSync(work, { recursive: true, force: true });
  })());
  let interrupted = false;
  const onSig = (): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write('\ndemo: interrupted, cleaning up\n');
    void cleanup().then(() => {
      process.stderr.write(`demo: removed namespaces ${tb.prefix}-*${etcd ? ', etcd' : ''} and ${work}\n`);
      process.exit(130);
    });
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);

  try {
    const mode = opts.static ? 'static (--subnet and a peers file)' : 'etcd (subnets leased from etcd)';
    console.log(`demo: ${mode}, backend ${opts.backend}, transport ${opts.transport}${opts.dualStack ? `, dual stack (IPv6Network ${NET6})` : ''}, namespaces ${tb.prefix}-*`);
    mkdirSync(work, { recursive: true });
    for (let n = 1; n <= 3; n++) {
      const kind = opts.backend === 'vxlan' && n === 3 ? 'kernel' : 'overlayd';
      const dir = join(work, `h${n}`);
      mkdirSync(dir);
      const h: Host = { n, ns: tb.host(`h${n}`), underlay: `198.18.0.${n}`, kind, dir, log: join(dir, 'overlayd.log') };
      if (opts.static) h.subnet = `198.19.${n}.0/24`;
      if (opts.static && opts.dualStack) h.subnet6 = `2001:2:0:800${n}::/64`;
      hosts.push(h);
    }
    const hub = tb.lan(hosts.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${h.underlay}/24` })));
    // dual stack: an IPv6 underlay address beside the IPv4 one (no DAD: usable at once)
    if (opts.dualStack) for (const h of hosts) h.ns.ip('addr', 'add', `${underlay6(h.n)}/64`, 'dev', 'eth0', 'nodad');
    const netConf = JSON.stringify({
      Network: '198.19.0.0/16', SubnetLen: 24, ...(opts.dualStack ? { EnableIPv6: true, IPv6Network: NET6 } : {}),
      Backend: opts.backend === 'vxlan' ? { Type: 'vxlan', VNI: 1, Port: 8472 } : { Type: 'udp', Port: 8285 },
    });

    // etcd in the hub, on the underlay bridge: the cluster's network config goes in first.
    if (!opts.static) {
      hub.ip('addr', 'add', `${ETCD_IP}/24`, 'dev', 'br0');
      etcd = await startEtcd({ ns: hub, host: ETCD_IP, parentDir: work });
      etcd.ctl('put', `${PREFIX}/config`, netConf);
      console.log(`demo: etcd at ${etcd.url} in ${hub.name}; etcdctl put ${PREFIX}/config '${netConf}'`);
    }

    // The kernel host: flannel.1 exactly as flanneld sets it up (its lease first: in etcd mode
    // the demo plays flanneld and writes it under a 24 h etcd lease, so overlayd hosts lease around it).
    const kernel = hosts.find((h) => h.kind === 'kernel');
    if (kernel) {
      const k = kernel.ns;
      // Default offload settings: over veth the kernel sends 64 KB super-packets with the inner
      // checksum left partial; overlayd (offload auto) hands them to its TUN to finish.
      k.ip('link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', kernel.underlay, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
      k.ip('link', 'set', 'flannel.1', 'mtu', '1450');
      const mac = (JSON.parse(k.ip('-j', 'link', 'show', 'flannel.1')) as { address: string }[])[0]!.address;
      kernel.subnet ??= `198.19.${1 + Math.floor(Math.random() * 255)}.0/24`;
      const net = kernel.subnet.split('/')[0]!;
      let key = kernel.subnet.replace('/', '-');
      const value: Record<string, unknown> = { PublicIP: kernel.underlay, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } };
      if (opts.dualStack) {
        // flannel-v6.1 over the IPv6 underlay (MTU underlay - 70), its IPv6 subnet's address /128
        k.ip('link', 'add', 'flannel-v6.1', 'type', 'vxlan', 'id', '1', 'local', underlay6(kernel.n), 'dev', 'eth0', 'dstport', '8472', 'nolearning');
        k.ip('link', 'set', 'flannel-v6.1', 'mtu', '1430');
        const mac6 = (JSON.parse(k.ip('-j', 'link', 'show', 'flannel-v6.1')) as { address: string }[])[0]!.address;
        kernel.subnet6 ??= `2001:2:0:${(0x8010 + Math.floor(Math.random() * 0x7fe0)).toString(16)}::/64`;
        key += `&${kernel.subnet6.replace('/', '-')}`;
        Object.assign(value, { PublicIPv6: underlay6(kernel.n), BackendV6Data: { VNI: 1, VtepMAC: mac6 } });
        k.ip('addr', 'add', `${kernel.subnet6.split('/')[0]}/128`, 'dev', 'flannel-v6.1', 'nodad');
        k.ip('link', 'set', 'flannel-v6.1', 'up');
      }
      kernel.lease = { [key]: value };
      if (etcd) {
        const id = /^lease ([0-9a-f]+) granted/.exec(etcd.ctl('lease', 'grant', String(LEASE_TTL_S)))?.[1];
        if (!id) throw new Error('etcdctl lease grant: no lease ID in its output');
        etcd.ctl('put', `--lease=${id}`, `${PREFIX}/subnets/${key}`, JSON.stringify(value));
      }
      k.ip('addr', 'add', `${net}/32`, 'dev', 'flannel.1');
      k.ip('link', 'set', 'flannel.1', 'up');
      const env6 = kernel.subnet6 !== undefined ? `FLANNEL_IPV6_NETWORK=${NET6}\nFLANNEL_IPV6_SUBNET=${kernel.subnet6.replace('::/', '::1/')}\n` : '';
      writeFileSync(join(kernel.dir, 'subnet.env'), `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=${net.replace(/\.0$/, '.1')}/24\n${env6}FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
    }

    // Start overlayd on its hosts: static, each with its --subnet and an empty peers file;
    // etcd, with nothing but --etcd-endpoints (it leases a subnet and watches the others').
    const { openSync } = await import('node:fs');
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) {
      const args = [
        '--iface-regex', 'eth0', '--subnet-file', join(h.dir, 'subnet.env'), '--lease-out', join(h.dir, 'lease.json'),
        '--transport', opts.transport, '--healthz-port', String(HEALTHZ_PORT), '--stats-interval', '5',
      ];
      if (opts.dualStack) args.push('--public-ipv6', underlay6(h.n));
      if (etcd) {
        args.unshift('--etcd-endpoints', etcd.url);
      } else {
        writeFileSync(join(h.dir, 'net-conf.json'), netConf);
        writeFileSync(join(h.dir, 'peers.json'), '{}\n');
        args.unshift('--net-conf', join(h.dir, 'net-conf.json'), '--subnet', h.subnet!, '--peers', join(h.dir, 'peers.json'), ...(h.subnet6 ? ['--ipv6-subnet', h.subnet6] : []));
      }
      const fd = openSync(h.log, 'a');
      const [cmd, ...rest] = overlaydCommand();
      h.child = tb.track(h.ns.spawn(cmd!, [...rest, ...args], { cwd: ROOT, stdio: ['ignore', fd, fd] }));
    }
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) {
      const text = await waitFor(`overlayd on h${h.n} to ${etcd ? 'lease a subnet' : 'write its lease'}`, 30_000, () => {
        try { return readFileSync(join(h.dir, 'lease.json'), 'utf8'); } catch { return undefined; }
      }, () => (h.child!.exitCode !== null ? `overlayd on h${h.n} exited with ${h.child!.exitCode}:\n${tail(h.log)}` : undefined));
      h.lease = JSON.parse(text) as Record<string, unknown>;
      // the lease key: "198.19.7.0-24", dual stack "198.19.7.0-24&2001:2:0:8007::-64"
      const [k4, k6] = Object.keys(h.lease)[0]!.split('&');
      h.subnet ??= k4!.replace('-', '/');
      if (k6 !== undefined) h.subnet6 ??= k6.replace(/-(\d+)$/, '/$1');
    }

    // Every host's lease: in etcd mode as etcd holds it (each must be there, bound to an etcd
    // lease, with the host's PublicIP and the subnet its overlayd wrote to subnet.env).
    const envSubnet = (h: Host, key = 'FLANNEL_SUBNET'): string => new RegExp(`^${key}=(.*)$`, 'm').exec(readFileSync(join(h.dir, 'subnet.env'), 'utf8'))?.[1] ?? '?';
    const keyOf = (h: Host): string => `${h.subnet!.replace('/', '-')}${h.subnet6 !== undefined ? `&${h.subnet6.replace(/\/(\d+)$/, '-$1')}` : ''}`;
    let all: Record<string, unknown>;
    if (etcd) {
      const leases = etcdLeases(etcd);
      all = Object.fromEntries(leases.map((l) => [l.key, l.value]));
      const rows: string[][] = [['host', 'PublicIP', `lease in etcd (${PREFIX}/subnets/...)`, 'etcd lease TTL', 'VtepMAC', 'subnet.env FLANNEL_SUBNET']];
      for (const h of hosts) {
        const mine = leases.filter((l) => l.value.PublicIP === h.underlay);
        if (mine.length !== 1) throw new Error(`etcd holds ${mine.length} leases with PublicIP ${h.underlay} (h${h.n}), expected 1: ${leases.map((l) => l.key).join(', ')}`);
        const l = mine[0]!;
        const env = envSubnet(h);
        if (l.key !== keyOf(h) || !env.startsWith(h.subnet!.replace(/\.0\/\d+$/, '.'))) {
          throw new Error(`h${h.n}: lease in etcd ${l.key}, overlayd's own lease ${h.subnet}, subnet.env ${env}: they disagree`);
        }
        if (!l.leaseId || !(l.left! > 0)) throw new Error(`h${h.n}: lease ${l.key} is not bound to a live etcd lease`);
        rows.push([`h${h.n} ${h.kind === 'kernel' ? 'kernel' : 'overlayd'}`, h.underlay, l.key, `${l.left} s of ${l.ttl} s`, l.value.BackendData?.VtepMAC ?? '-', env]);
        if (opts.dualStack) rows.push(['', l.value.PublicIPv6 ?? '-', '(IPv6 half)', '', l.value.BackendV6Data?.VtepMAC ?? '-', envSubnet(h, 'FLANNEL_IPV6_SUBNET')]);
      }
      console.log(`demo: every host joined by lease (etcdctl get --prefix ${PREFIX}/subnets/; subnet.env as each host wrote it)\n${table(rows)}`);
    } else {
      all = Object.assign({}, ...hosts.map((h) => h.lease)) as Record<string, unknown>;
      console.log(`demo: leases\n${Object.entries(all).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join('\n')}`);
    }

    // The kernel host's routes, neighbours and FDB entries for the others' leases (flanneld's work).
    if (kernel) {
      const k = kernel.ns;
      for (const [key, v] of Object.entries(all) as [string, { PublicIP: string; PublicIPv6?: string; BackendData: { VtepMAC: string }; BackendV6Data?: { VtepMAC: string } }][]) {
        if (v.PublicIP === kernel.underlay) continue;
        const [k4, k6] = key.split('&');
        const net = k4!.split('-')[0]!;
        k.ip('route', 'replace', k4!.replace('-', '/'), 'via', net, 'dev', 'flannel.1', 'onlink');
        k.ip('neigh', 'replace', net, 'lladdr', v.BackendData.VtepMAC, 'dev', 'flannel.1', 'nud', 'permanent');
        sh('bridge', ['-n', k.name, 'fdb', 'append', v.BackendData.VtepMAC, 'dev', 'flannel.1', 'dst', v.PublicIP]);
        // dual stack: the same on flannel-v6.1 for the IPv6 half, to its PublicIPv6
        if (kernel.subnet6 === undefined || k6 === undefined || v.PublicIPv6 === undefined || v.BackendV6Data === undefined) continue;
        const net6 = k6.replace(/-\d+$/, '');
        k.ip('route', 'replace', k6.replace(/-(\d+)$/, '/$1'), 'via', net6, 'dev', 'flannel-v6.1', 'onlink');
        k.ip('neigh', 'replace', net6, 'lladdr', v.BackendV6Data.VtepMAC, 'dev', 'flannel-v6.1', 'nud', 'permanent');
        sh('bridge', ['-n', k.name, 'fdb', 'append', v.BackendV6Data.VtepMAC, 'dev', 'flannel-v6.1', 'dst', v.PublicIPv6]);
      }
    }

    // The pod gateway (cni0) from each host's subnet.env.
    for (const h of hosts) {
      const sub = envSubnet(h);
      h.gw = sub.split('/')[0]!;
      h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
      h.ns.ip('addr', 'add', sub, 'dev', 'cni0');
      if (opts.dualStack) {
        const sub6 = envSubnet(h, 'FLANNEL_IPV6_SUBNET');
        h.gw6 = sub6.split('/')[0]!;
        h.ns.ip('addr', 'add', sub6, 'dev', 'cni0', 'nodad');
      }
      h.ns.ip('link', 'set', 'cni0', 'up');
    }

    // Static: every overlayd gets every lease (its own is skipped), in flannel's etcd layout.
    if (!etcd) for (const h of hosts.filter((x) => x.kind === 'overlayd')) writeAtomic(join(h.dir, 'peers.json'), JSON.stringify(all, null, 2) + '\n');

    // Wait for the tunnel (peers from the watch or the peers file; first pings may race them).
    const families = opts.dualStack ? [false, true] : [false];
    for (const v6 of families) {
      for (const a of hosts) {
        for (const b of hosts) {
          if (a === b) continue;
          await waitFor(`overlay path h${a.n} -> h${b.n}${v6 ? ' (IPv6)' : ''}`, 15_000, () => (ping(a, b, 1, v6).received === 1 ? true : undefined));
        }
      }
    }

    const pings: PingResult[] = [];
    for (const v6 of families) for (const a of hosts) for (const b of hosts) if (a !== b) pings.push(ping(a, b, 10, v6));
    const tcps: TcpResult[] = [];
    const pairs: [number, number][] = [[1, 2], [2, 3], [3, 1]];
    for (const v6 of families) for (const [c, s] of pairs) tcps.push(await tcp(hosts[c - 1]!, hosts[s - 1]!, opts.seconds, v6));

    const rows: string[][] = [['path', 'ping loss', 'RTT avg/max ms', 'TCP Mbit/s', 'TCP retrans']];
    for (const p of pings) {
      const t = tcps.find((x) => x.from === p.from && x.to === p.to && x.v6 === p.v6);
      rows.push([
        `h${p.from} -> h${p.to} (${gwOf(hosts[p.from - 1]!, p.v6 === true)} -> ${gwOf(hosts[p.to - 1]!, p.v6 === true)})`,
        `${p.sent - p.received}/${p.sent}`,
        p.avg !== undefined ? `${p.avg.toFixed(3)} / ${p.max!.toFixed(3)}` : '-',
        t ? (t.error ? `error: ${t.error}` : t.mbps!.toFixed(1)) : '',
        t && !t.error ? String(t.retrans) : '',
      ]);
    }
    const crow: string[][] = [['host', 'dataplane', 'tx pkts', 'tx bytes', 'rx pkts', 'rx bytes', 'drops (reason=count)']];
    for (const h of hosts) {
      if (h.kind === 'kernel') {
        for (const dev of opts.dualStack ? ['flannel.1', 'flannel-v6.1'] : ['flannel.1']) {
          const k = kernelCounters(h, dev);
          crow.push([`h${h.n} ${h.underlay}`, `kernel ${dev}`, String(k.tx), '-', String(k.rx), '-', String(k.drops)]);
        }
        continue;
      }
      const m = metrics(h);
      const drops = [...m].filter(([k, v]) => k.startsWith('overlayd_drops_total') && v > 0).map(([k, v]) => `${/reason="([^"]+)"/.exec(k)?.[1]}=${v}`).join(' ') || '0';
      crow.push([`h${h.n} ${h.underlay}`, `overlayd ${opts.backend}/${opts.transport}`, String(m.get('overlayd_tx_packets_total') ?? '?'), String(m.get('overlayd_tx_bytes_total') ?? '?'),
        String(m.get('overlayd_rx_packets_total') ?? '?'), String(m.get('overlayd_rx_bytes_total') ?? '?'), drops]);
    }
    console.log(`\nSummary (${opts.backend}${opts.dualStack ? ', dual stack: IPv4 and IPv6' : ''}, ${etcd ? 'subnets leased from etcd' : 'static subnets'}, ${opts.seconds} s iperf3 per TCP pair, 10 pings per pair)\n`);
    console.log(table(rows));
    console.log('');
    console.log(table(crow));
    if (opts.verbose) for (const h of hosts.filter((x) => x.kind === 'overlayd')) console.log(`\n--- overlayd h${h.n} log ---\n${tail(h.log, 40)}`);
    const ok = pings.every((p) => p.received > 0) && tcps.every((t) => !t.error);
    const etcdDir = etcd?.dir;
    await cleanup();
    const exits = hosts.filter((h) => h.kind === 'overlayd').map((h) => `h${h.n}=${h.exitCode}`).join(' ');
    const left = sh('ip', ['netns', 'list']).split('\n').filter((l) => l.startsWith(tb.prefix));
    console.log(`\ndemo: overlayd exit codes after SIGTERM: ${exits}; namespaces left: ${left.length}; work dir removed: ${!existsSync(work)}${etcdDir ? `; etcd stopped, data removed: ${!existsSync(etcdDir)}` : ''}`);
    console.log(ok ? 'demo: OK' : 'demo: FAILED (see table)');
    return ok ? 0 : 1;
  } catch (e) {
    if (interrupted) { await cleanup(); return 130; }
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) process.stderr.write(`--- overlayd h${h.n} log ---\n${tail(h.log, 15)}\n`);
    if (etcd) process.stderr.write(`--- etcd log ---\n${etcd.output().trim().split('\n').slice(-10).join('\n')}\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exit(1);
});
