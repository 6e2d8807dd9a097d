/**
 * `npm run demo` (as root): three namespace hosts on a shared underlay
 * (198.18.0.0/24), overlay 198.19.0.0/16 with leases 198.19.1.0/24, .2.0/24, .3.0/24,
 * overlayd on each (UDP backend by default). With `-- --backend vxlan`, host 3 is the
 * Linux kernel's own VXLAN device configured exactly as flannel configures flannel.1
 * (VNI 1, port 8472, nolearning; route via X onlink, permanent neighbour, bridge fdb
 * append dst), so our VTEP talks to the kernel's.
 *
 * Each host gets a "cni0" bridge holding FLANNEL_SUBNET from the subnet.env overlayd
 * wrote (the pod gateway flannel's CNI plugin would create). The demo pings every
 * ordered pair between those addresses, runs a short iperf3 TCP transfer, prints a
 * summary table (RTT, throughput, counters from each overlayd's /metrics), and removes
 * everything in `finally`, also on Ctrl-C.
 *
 * Flags: --backend udp|vxlan (udp), --transport dgram|mmsg (mmsg), --seconds N (3),
 * --verbose (print overlayd logs).
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Testbed, sh, type NsHost } from './lib/netns.js';
import { missingToolsLine } from './lib/need.js';
import { addonPath } from '../src/tun/native.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HEALTHZ_PORT = 9707;

interface Host {
  n: number;
  ns: NsHost;
  underlay: string;
  subnet: string;
  gw: string;
  kind: 'overlayd' | 'kernel';
  dir: string;
  child?: ChildProcess;
  log: string;
  lease?: Record<string, unknown>;
  exitCode?: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function usage(): never {
  process.stdout.write('usage: npm run demo -- [--backend udp|vxlan] [--transport dgram|mmsg] [--seconds N] [--verbose]\n');
  process.exit(0);
}

function parse(): { backend: 'udp' | 'vxlan'; transport: 'dgram' | 'mmsg'; seconds: number; verbose: boolean } {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'udp' },
      transport: { type: 'string', default: 'mmsg' },
      seconds: { type: 'string', default: '3' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) usage();
  const backend = values.backend;
  const transport = values.transport;
  if (backend !== 'udp' && backend !== 'vxlan') throw new Error(`--backend must be udp or vxlan, got ${backend}`);
  if (transport !== 'dgram' && transport !== 'mmsg') throw new Error(`--transport must be dgram or mmsg, got ${transport}`);
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 60)) throw new Error('--seconds must be in 1..60');
  return { backend, transport, seconds, verbose: values.verbose ?? false };
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

interface PingResult { from: number; to: number; sent: number; received: number; avg?: number; max?: number }

function ping(from: Host, to: Host, count: number): PingResult {
  let out = '';
  try {
    out = from.ns.exec('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', '-I', from.gw, to.gw], { timeout: 30_000 });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const r = /= [\d.]+\/([\d.]+)\/([\d.]+)\//.exec(out);
  const res: PingResult = { from: from.n, to: to.n, sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0 };
  if (r) { res.avg = Number(r[1]); res.max = Number(r[2]); }
  return res;
}

interface TcpResult { from: number; to: number; mbps?: number; bytes?: number; retrans?: number; error?: string }

async function tcp(client: Host, server: Host, seconds: number): Promise<TcpResult> {
  const srv = server.ns.spawn('iperf3', ['-s', '-1', '-B', server.gw, '-p', '5201'], { stdio: 'ignore' });
  try {
    await sleep(300);
    const out = client.ns.exec('iperf3', ['-c', server.gw, '-B', client.gw, '-p', '5201', '-t', String(seconds), '-J', '--connect-timeout', '3000'], { timeout: (seconds + 15) * 1000 });
    const j = JSON.parse(out) as { end?: { sum_received?: { bits_per_second: number; bytes: number }; sum_sent?: { retransmits?: number } }; error?: string };
    if (j.error) return { from: client.n, to: server.n, error: j.error };
    return { from: client.n, to: server.n, mbps: (j.end?.sum_received?.bits_per_second ?? 0) / 1e6, bytes: j.end?.sum_received?.bytes ?? 0, retrans: j.end?.sum_sent?.retransmits ?? 0 };
  } catch (e) {
    const s = String((e as { stdout?: string }).stdout ?? '');
    let msg = (e as Error).message.split('\n')[0]!;
    try { msg = (JSON.parse(s) as { error?: string }).error ?? msg; } catch { /* not JSON */ }
    return { from: client.n, to: server.n, error: msg };
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

/** Kernel counters of flannel.1 for the kernel host. */
function kernelCounters(h: Host): { tx: number; rx: number; drops: number } {
  const j = JSON.parse(h.ns.ip('-j', '-s', 'link', 'show', 'flannel.1')) as { stats64: { tx: { packets: number; dropped: number }; rx: { packets: number; dropped: number } } }[];
  const s = j[0]!.stats64;
  return { tx: s.tx.packets, rx: s.rx.packets, drops: s.tx.dropped + s.rx.dropped };
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => '| ' + r.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |';
  const sep = '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|';
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<number> {
  const opts = parse();
  // what the machine lacks, in one line each, before anything is created
  const missing = missingToolsLine();
  if (missing !== undefined) {
    process.stderr.write(`demo: ${missing}\n`);
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
    tb.destroy();
    rmSync(work, { recursive: true, force: true });
  })());
  let interrupted = false;
  const onSig = (): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write('\ndemo: interrupted, cleaning up\n');
    void cleanup().then(() => {
      process.stderr.write(`demo: removed namespaces ${tb.prefix}-* and ${work}\n`);
      process.exit(130);
    });
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);

  try {
    console.log(`demo: backend ${opts.backend}, transport ${opts.transport}, namespaces ${tb.prefix}-*`);
    mkdirSync(work, { recursive: true });
    for (let n = 1; n <= 3; n++) {
      const kind = opts.backend === 'vxlan' && n === 3 ? 'kernel' : 'overlayd';
      const dir = join(work, `h${n}`);
      mkdirSync(dir);
      hosts.push({ n, ns: tb.host(`h${n}`), underlay: `198.18.0.${n}`, subnet: `198.19.${n}.0/24`, gw: `198.19.${n}.1`, kind, dir, log: join(dir, 'overlayd.log') });
    }
    tb.lan(hosts.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${h.underlay}/24` })));
    const netConf = JSON.stringify({ Network: '198.19.0.0/16', SubnetLen: 24, Backend: opts.backend === 'vxlan' ? { Type: 'vxlan', VNI: 1, Port: 8472 } : { Type: 'udp', Port: 8285 } });

    // Start overlayd on its hosts, each with an empty peers file.
    const { openSync } = await import('node:fs');
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) {
      writeFileSync(join(h.dir, 'net-conf.json'), netConf);
      writeFileSync(join(h.dir, 'peers.json'), '{}\n');
      const args = [
        '--net-conf', join(h.dir, 'net-conf.json'), '--subnet', h.subnet, '--iface-regex', 'eth0',
        '--peers', join(h.dir, 'peers.json'), '--subnet-file', join(h.dir, 'subnet.env'), '--lease-out', join(h.dir, 'lease.json'),
        '--transport', opts.transport, '--healthz-port', String(HEALTHZ_PORT), '--stats-interval', '5',
      ];
      const fd = openSync(h.log, 'a');
      const [cmd, ...rest] = overlaydCommand();
      h.child = tb.track(h.ns.spawn(cmd!, [...rest, ...args], { cwd: ROOT, stdio: ['ignore', fd, fd] }));
    }
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) {
      const text = await waitFor(`overlayd on h${h.n} to write its lease`, 30_000, () => {
        try { return readFileSync(join(h.dir, 'lease.json'), 'utf8'); } catch { return undefined; }
      }, () => (h.child!.exitCode !== null ? `overlayd on h${h.n} exited with ${h.child!.exitCode}:\n${tail(h.log)}` : undefined));
      h.lease = JSON.parse(text) as Record<string, unknown>;
    }

    // The kernel host: flannel.1 exactly as flanneld sets it up.
    const kernel = hosts.find((h) => h.kind === 'kernel');
    if (kernel) {
      const k = kernel.ns;
      // Default offload settings: over veth the kernel sends 64 KB super-packets with the inner
      // checksum left partial; overlayd (offload auto) hands them to its TUN to finish.
      k.ip('link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', kernel.underlay, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
      k.ip('link', 'set', 'flannel.1', 'mtu', '1450');
      k.ip('addr', 'add', '198.19.3.0/32', 'dev', 'flannel.1');
      k.ip('link', 'set', 'flannel.1', 'up');
      const mac = (JSON.parse(k.ip('-j', 'link', 'show', 'flannel.1')) as { address: string }[])[0]!.address;
      kernel.lease = { '198.19.3.0-24': { PublicIP: kernel.underlay, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } } };
      writeFileSync(join(kernel.dir, 'subnet.env'), `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
      for (const h of hosts.filter((x) => x !== kernel)) {
        const [key, v] = Object.entries(h.lease!)[0]! as [string, { PublicIP: string; BackendData: { VtepMAC: string } }];
        const net = key.split('-')[0]!;
        k.ip('route', 'replace', key.replace('-', '/'), 'via', net, 'dev', 'flannel.1', 'onlink');
        k.ip('neigh', 'replace', net, 'lladdr', v.BackendData.VtepMAC, 'dev', 'flannel.1', 'nud', 'permanent');
        sh('bridge', ['-n', k.name, 'fdb', 'append', v.BackendData.VtepMAC, 'dev', 'flannel.1', 'dst', v.PublicIP]);
      }
    }

    // The pod gateway (cni0) from each host's subnet.env.
    for (const h of hosts) {
      const env = readFileSync(join(h.dir, 'subnet.env'), 'utf8');
      const sub = /^FLANNEL_SUBNET=(.*)$/m.exec(env)![1]!;
      h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
      h.ns.ip('addr', 'add', sub, 'dev', 'cni0');
      h.ns.ip('link', 'set', 'cni0', 'up');
    }

    // Every overlayd gets every lease (its own is skipped), in flannel's etcd layout.
    const all = Object.assign({}, ...hosts.map((h) => h.lease)) as Record<string, unknown>;
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) writeAtomic(join(h.dir, 'peers.json'), JSON.stringify(all, null, 2) + '\n');
    console.log(`demo: leases\n${Object.entries(all).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join('\n')}`);

    // Wait for the tunnel (peers file watched; first pings may race the reload).
    for (const a of hosts) {
      for (const b of hosts) {
        if (a === b) continue;
        await waitFor(`overlay path h${a.n} -> h${b.n}`, 15_000, () => (ping(a, b, 1).received === 1 ? true : undefined));
      }
    }

    const pings: PingResult[] = [];
    for (const a of hosts) for (const b of hosts) if (a !== b) pings.push(ping(a, b, 10));
    const tcps: TcpResult[] = [];
    const pairs: [number, number][] = [[1, 2], [2, 3], [3, 1]];
    for (const [c, s] of pairs) tcps.push(await tcp(hosts[c - 1]!, hosts[s - 1]!, opts.seconds));

    const rows: string[][] = [['path', 'ping loss', 'RTT avg/max ms', 'TCP Mbit/s', 'TCP retrans']];
    for (const p of pings) {
      const t = tcps.find((x) => x.from === p.from && x.to === p.to);
      rows.push([
        `h${p.from} -> h${p.to} (${hosts[p.from - 1]!.gw} -> ${hosts[p.to - 1]!.gw})`,
        `${p.sent - p.received}/${p.sent}`,
        p.avg !== undefined ? `${p.avg.toFixed(3)} / ${p.max!.toFixed(3)}` : '-',
        t ? (t.error ? `error: ${t.error}` : t.mbps!.toFixed(1)) : '',
        t && !t.error ? String(t.retrans) : '',
      ]);
    }
    const crow: string[][] = [['host', 'dataplane', 'tx pkts', 'tx bytes', 'rx pkts', 'rx bytes', 'drops (reason=count)']];
    for (const h of hosts) {
      if (h.kind === 'kernel') {
        const k = kernelCounters(h);
        crow.push([`h${h.n} ${h.underlay}`, 'kernel flannel.1', String(k.tx), '-', String(k.rx), '-', String(k.drops)]);
        continue;
      }
      const m = metrics(h);
      const drops = [...m].filter(([k, v]) => k.startsWith('overlayd_drops_total') && v > 0).map(([k, v]) => `${/reason="([^"]+)"/.exec(k)?.[1]}=${v}`).join(' ') || '0';
      crow.push([`h${h.n} ${h.underlay}`, `overlayd ${opts.backend}/${opts.transport}`, String(m.get('overlayd_tx_packets_total') ?? '?'), String(m.get('overlayd_tx_bytes_total') ?? '?'),
        String(m.get('overlayd_rx_packets_total') ?? '?'), String(m.get('overlayd_rx_bytes_total') ?? '?'), drops]);
    }
    console.log(`\nSummary (${opts.backend}, ${opts.seconds} s iperf3 per TCP pair, 10 pings per pair)\n`);
    console.log(table(rows));
    console.log('');
    console.log(table(crow));
    if (opts.verbose) for (const h of hosts.filter((x) => x.kind === 'overlayd')) console.log(`\n--- overlayd h${h.n} log ---\n${tail(h.log, 40)}`);
    const ok = pings.every((p) => p.received > 0) && tcps.every((t) => !t.error);
    await cleanup();
    const exits = hosts.filter((h) => h.kind === 'overlayd').map((h) => `h${h.n}=${h.exitCode}`).join(' ');
    const left = sh('ip', ['netns', 'list']).split('\n').filter((l) => l.startsWith(tb.prefix));
    console.log(`\ndemo: overlayd exit codes after SIGTERM: ${exits}; namespaces left: ${left.length}; work dir removed: ${!existsSync(work)}`);
    console.log(ok ? 'demo: OK' : 'demo: FAILED (see table)');
    return ok ? 0 : 1;
  } catch (e) {
    if (interrupted) { await cleanup(); return 130; }
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    for (const h of hosts.filter((x) => x.kind === 'overlayd')) process.stderr.write(`--- overlayd h${h.n} log ---\n${tail(h.log, 15)}\n`);
    return 1;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exit(1);
});
