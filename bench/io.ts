/**
 * Raw I/O rates of src/tun, measured in a private network namespace:
 *  - TUN read: a generator process sends UDP (sendmmsg, 64 B payload) to an address routed
 *    into a TUN device; a reader process counts packets/s read with TunDevice.onBatch.
 *  - TUN write: a process writes prebuilt IPv4/UDP packets with TunDevice.writeBatch
 *    (batches of 64); reported: packets/s written and packets/s the kernel processed
 *    (UDP NoPorts counter of the namespace).
 *  - UDP over loopback: sender and receiver processes of the same kind (node:dgram or
 *    recvmmsg/sendmmsg), 64 and 1400-byte payloads; reported: datagrams/s received (and sent).
 * Every measurement runs in separate processes for a few seconds; CPU is not pinned, so
 * numbers are noisy on shared machines.
 *
 * Run: `npm run bench:io` (root; namespaces needed for the TUN rows). Options: --quick, --ms N.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { TunDevice, Rtnl, createTransport, allocSlots, allocDatagramSlots, HEADROOM, type PacketSlot } from '../src/tun/index.js';

/** One raw I/O result row. */
export interface Row {
  /** What was measured. */
  name: string;
  /** Packets (datagrams) per second: read/received/written as named. */
  perSec: number;
  /** Mean nanoseconds per packet (1e9 / perSec). */
  nsPerPacket: number;
  /** Secondary rate when meaningful (sent/s for UDP, kernel-processed/s for TUN write). */
  otherPerSec?: number;
  /** What `otherPerSec` is. */
  otherLabel?: string;
  /** Measurement window, ms. */
  ms: number;
  /** Extra detail (e.g. mean packets per batch callback). */
  note?: string;
}

/** Options of runIoBench. */
export interface IoBenchOptions {
  /** Shorter runs (1 s per measurement). */
  quick?: boolean;
  /** Milliseconds per measurement (default 3000; 1000 with quick). */
  ms?: number;
  /** Print a table to stdout (default true). */
  print?: boolean;
}

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(dirname(SELF), '..');

// ---------------------------------------------------------------- child side

function say(o: Record<string, unknown>): void { process.stdout.write(`${JSON.stringify(o)}\n`); }
function onStop(f: () => void): void {
  process.stdin.on('data', (d: Buffer) => { if (d.toString().includes('stop')) f(); });
  process.stdin.on('end', f);
}

function csum16(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

async function childTunRead(): Promise<void> {
  const dev = await TunDevice.create({ name: 'odio0', addresses: ['198.19.10.1/24'], up: true, batch: 64 });
  await Rtnl.shared().setLink(dev.ifindex, { txqlen: 10000 });
  let count = 0, batches = 0, t0 = 0;
  dev.onBatch((_s, n) => { if (!t0) t0 = performance.now(); count += n; batches++; });
  say({ ev: 'ready' });
  onStop(() => { say({ ev: 'done', count, batches, ms: performance.now() - t0 }); dev.close(); process.exit(0); });
}

function noPorts(): number {
  const lines = readFileSync('/proc/self/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const keys = lines[0].split(/\s+/), vals = lines[1].split(/\s+/);
  return Number(vals[keys.indexOf('NoPorts')]);
}

async function childTunWrite(ms: number): Promise<void> {
  const dev = await TunDevice.create({ name: 'odio1', addresses: ['198.19.11.1/24'], up: true, batch: 4 });
  const slots: PacketSlot[] = allocSlots(64, 2048);
  for (const s of slots) {
    const b = s.buf, o = HEADROOM, len = 20 + 8 + 64;
    b.fill(0, o, o + len);
    b[o] = 0x45; b.writeUInt16BE(len, o + 2); b[o + 8] = 64; b[o + 9] = 17;
    Buffer.from([198, 19, 11, 2]).copy(b, o + 12); Buffer.from([198, 19, 11, 1]).copy(b, o + 16);
    b.writeUInt16BE(csum16(b, o, 20), o + 10);
    b.writeUInt16BE(40000, o + 20); b.writeUInt16BE(9, o + 22); b.writeUInt16BE(8 + 64, o + 24); // UDP checksum 0
    s.off = o; s.len = len;
  }
  await new Promise((r) => setTimeout(r, 200));
  const np0 = noPorts();
  let written = 0, attempted = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  while (performance.now() < end) {
    for (let k = 0; k < 64; k++) { written += dev.writeBatch(slots, 64); attempted += 64; }
    await new Promise((r) => setImmediate(r)); // let softirq/other work run between bursts
  }
  const el = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 100));
  say({ ev: 'done', written, attempted, ms: el, kernel: noPorts() - np0 });
  dev.close();
  process.exit(0);
}

async function childUdpRecv(kind: 'dgram' | 'mmsg'): Promise<void> {
  const t = createTransport(kind, { batch: 64, rcvbuf: 4 << 20 });
  await t.bind(0, '127.0.0.1');
  let count = 0, t0 = 0, last = 0;
  let batches = 0;
  t.onBatch((_s, n) => { const now = performance.now(); if (!t0) t0 = now; last = now; count += n; batches++; });
  say({ ev: 'ready', port: t.localPort() });
  onStop(() => { say({ ev: 'done', count, batches, ms: last - t0 }); t.close(); process.exit(0); });
}

async function childUdpSend(kind: 'dgram' | 'mmsg', port: number, size: number, ms: number, host: string, bind: string): Promise<void> {
  const t = createTransport(kind, { batch: 4, sndbuf: 4 << 20 });
  await t.bind(0, bind);
  const slots = allocDatagramSlots(64, 2048);
  const [a, b, c, d] = host.split('.').map(Number);
  for (const s of slots) { s.buf.fill(0x61, HEADROOM, HEADROOM + size); s.len = size; s.family = 4; s.addr = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0; s.port = port; }
  let sent = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  while (performance.now() < end) {
    for (let k = 0; k < 16; k++) sent += t.sendBatch(slots, 64);
    await new Promise((r) => setImmediate(r));
  }
  const el = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 50));
  say({ ev: 'done', sent, ms: el });
  t.close();
  process.exit(0);
}

// ---------------------------------------------------------------- parent side

interface Proc { p: ChildProcess; next(pred: (e: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>> }

function startChild(ns: string | null, args: string[]): Proc {
  const cmd = ['node', '--import', 'tsx', SELF, '--child', ...args];
  const p = ns ? spawn('ip', ['netns', 'exec', ns, ...cmd], { cwd: ROOT, stdio: 'pipe' }) : spawn(cmd[0], cmd.slice(1), { cwd: ROOT, stdio: 'pipe' });
  const events: Record<string, unknown>[] = [];
  let buf = '', err = '';
  const wake: (() => void)[] = [];
  p.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { try { events.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>); } catch { /* noise */ } buf = buf.slice(i + 1); }
    wake.splice(0).forEach((w) => w());
  });
  p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  p.on('exit', () => wake.splice(0).forEach((w) => w()));
  return {
    p,
    async next(pred, ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const e = events.find(pred);
        if (e) return e;
        if (p.exitCode !== null || Date.now() > deadline) throw new Error(`bench child ${args.join(' ')} failed: ${err.trim() || `exit ${p.exitCode}`}`);
        await new Promise<void>((r) => { wake.push(r); setTimeout(r, 200); });
      }
    },
  };
}

function netnsOk(): boolean {
  try { return process.getuid?.() === 0 && !!execFileSync('ip', ['-V'], { encoding: 'utf8' }); } catch { return false; }
}

const row = (name: string, count: number, ms: number, other?: number, otherLabel?: string): Row => {
  const perSec = ms > 0 ? (count * 1000) / ms : 0;
  return { name, perSec, nsPerPacket: perSec ? 1e9 / perSec : 0, otherPerSec: other, otherLabel, ms: Math.round(ms) };
};

/** Run the raw I/O benchmark; returns one row per measurement. */
export async function runIoBench(opts: IoBenchOptions = {}): Promise<Row[]> {
  const ms = opts.ms ?? (opts.quick ? 1000 : 3000);
  const rows: Row[] = [];
  const useNs = netnsOk();
  const ns = useNs ? `odio${process.pid.toString(36)}${randomBytes(2).toString('hex')}` : null;
  const kids: ChildProcess[] = [];
  const track = (c: Proc): Proc => { kids.push(c.p); return c; };
  try {
    if (ns) {
      execFileSync('ip', ['netns', 'add', ns]);
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      // TUN read: generator (sendmmsg) -> kernel -> TUN -> reader.
      const reader = track(startChild(ns, ['tun-read']));
      await reader.next((e) => e.ev === 'ready');
      const gen = track(startChild(ns, ['udp-send', 'mmsg', '9', '64', String(ms), '198.19.10.2', '198.19.10.1']));
      const g = await gen.next((e) => e.ev === 'done', ms + 30_000);
      reader.p.stdin!.write('stop\n');
      const r = await reader.next((e) => e.ev === 'done');
      const rr = row('TUN read (onBatch), 64 B UDP', Number(r.count), Number(r.ms), (Number(g.sent) * 1000) / Number(g.ms), 'generated/s');
      rr.note = `mean batch ${(Number(r.count) / Math.max(1, Number(r.batches))).toFixed(1)}`;
      rows.push(rr);
      // TUN write.
      const w = track(startChild(ns, ['tun-write', String(ms)]));
      const wr = await w.next((e) => e.ev === 'done', ms + 30_000);
      rows.push(row('TUN write (writeBatch x64), 92 B IPv4/UDP', Number(wr.written), Number(wr.ms), (Number(wr.kernel) * 1000) / Number(wr.ms), 'kernel processed/s'));
    }
    // UDP over loopback (inside the namespace when we have one).
    for (const size of [64, 1400]) {
      for (const kind of ['dgram', 'mmsg'] as const) {
        const rcv = track(startChild(ns, ['udp-recv', kind]));
        const ready = await rcv.next((e) => e.ev === 'ready');
        const snd = track(startChild(ns, ['udp-send', kind, String(ready.port), String(size), String(ms), '127.0.0.1', '127.0.0.1']));
        const s = await snd.next((e) => e.ev === 'done', ms + 30_000);
        await new Promise((res) => setTimeout(res, 100));
        rcv.p.stdin!.write('stop\n');
        const r = await rcv.next((e) => e.ev === 'done');
        const ur = row(`UDP loopback ${kind}, ${size} B: received`, Number(r.count), Number(r.ms), (Number(s.sent) * 1000) / Number(s.ms), 'sent/s');
        ur.note = `mean batch ${(Number(r.count) / Math.max(1, Number(r.batches))).toFixed(1)}`;
        rows.push(ur);
      }
    }
  } finally {
    for (const k of kids) { try { if (k.exitCode === null) k.kill('SIGKILL'); } catch { /* gone */ } }
    if (ns) { try { execFileSync('ip', ['netns', 'del', ns]); } catch { /* gone */ } }
  }
  if (opts.print !== false) {
    const fmt = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
    console.log(`raw I/O (${ms} ms per measurement${ns ? ', in a network namespace' : ', no namespace: TUN rows skipped'})`);
    console.log(`${'measurement'.padEnd(46)} ${'pkts/s'.padStart(10)} ${'ns/pkt'.padStart(8)}  other`);
    for (const r of rows) {
      console.log(`${r.name.padEnd(46)} ${fmt(r.perSec).padStart(10)} ${r.nsPerPacket.toFixed(0).padStart(8)}  ${r.otherLabel ? `${fmt(r.otherPerSec ?? 0)} ${r.otherLabel}` : ''}${r.note ? `; ${r.note}` : ''}`);
    }
  }
  return rows;
}

// ---------------------------------------------------------------- entry

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const [mode, ...a] = argv.slice(1);
  const run: Promise<void> =
    mode === 'tun-read' ? childTunRead()
    : mode === 'tun-write' ? childTunWrite(Number(a[0]))
    : mode === 'udp-recv' ? childUdpRecv(a[0] as 'dgram' | 'mmsg')
    : mode === 'udp-send' ? childUdpSend(a[0] as 'dgram' | 'mmsg', Number(a[1]), Number(a[2]), Number(a[3]), a[4], a[5])
    : Promise.reject(new Error(`unknown child mode ${mode}`));
  run.catch((e: unknown) => { process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`); process.exit(1); });
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = argv.includes('--quick');
  const i = argv.indexOf('--ms');
  runIoBench({ quick, ms: i >= 0 ? Number(argv[i + 1]) : undefined }).catch((e: unknown) => { console.error(e); process.exit(1); });
}
