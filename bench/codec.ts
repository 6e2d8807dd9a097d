/**
 * Codec micro-benchmark (tinybench): ns per packet for the per-packet codec paths,
 * checksum throughput, the offload stages per segment (a 64 KB TSO super-packet segmented
 * for a UDP GSO send, and its segments coalesced back), and a zero-allocation proof. The
 * addon's checksum primitives are installed when it loads, as in a running overlayd.
 *
 *   npm run bench:codec
 *   NODE_OPTIONS=--expose-gc npm run bench:codec   # also forces GC around the allocation check
 *
 * Each tinybench task runs a batch of BATCH packet operations so the timer overhead is
 * amortised; ns/packet = task mean / BATCH.
 *
 * Zero allocation: the hot loops are run for millions of iterations while V8's new
 * space usage (v8.getHeapSpaceStatistics) and garbage collections (PerformanceObserver
 * 'gc' entries) are watched. Any per-packet allocation shows up as new-space growth
 * and scavenges; none does.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import { Bench } from 'tinybench';
import {
  emitEthernet, emitIpv4, emitUdp, EtherType, flannelDecrementTtl, flannelUdpValidate, IpProto, ipv4FillChecksum,
  onesSum, VxlanDecapResult, vxlanDecapFrame, vxlanDecapOptions, vxlanDecapSocket, vxlanEncapFull, vxlanEncapSocket,
  vxlanTunnel, VXLAN_IPV4_OVERHEAD,
} from '../src/codec/index.js';
import {
  emitVirtioTcpGso, gsoSegmentStrided, SegmentInfo, TcpCoalescer, VirtioNetHdr,
} from '../src/codec/index.js';
import { HEADROOM, SLOT_SIZE } from '../src/tun/types.js';
import { native } from '../src/tun/native.js';

// as in overlayd: long checksums through the addon when it is built
let nativeChecksums = true;
try { native(); } catch { nativeChecksums = false; }

/** One benchmark result row. */
export interface Row {
  /** What was measured. */
  name: string;
  /** Mean nanoseconds per packet (or per checksum call). */
  nsPerPacket: number;
  /** Packets (or calls) per second. */
  perSec: number;
  /** Throughput in GB/s for byte-processing rows (checksum), else undefined. */
  gbPerSec?: number;
  /** Relative margin of error of the mean, percent. */
  rme: number;
  /** CPU time (process user + system) per packet, ns: less sensitive than wall time to other processes on the machine. */
  cpuNsPerPacket: number;
  /** Goal, as text (e.g. "< 30 ns"), when the issue sets one. */
  goal?: string;
  /** Whether the goal was met (undefined without a goal). */
  met?: boolean;
}

/** Options of runCodecBench. */
export interface CodecBenchOptions {
  /** Time per task, ms (tinybench `time`); default 500. */
  timeMs?: number;
  /** Iterations for the zero-allocation check; default 10,000,000. */
  allocIterations?: number;
  /** Print tables to stdout; default true. */
  print?: boolean;
}

/** Result of the zero-allocation check for one loop. */
export interface AllocRow {
  /** Loop measured. */
  name: string;
  /** Iterations run. */
  iterations: number;
  /** New-space bytes used after minus before (with no GC in between, this bounds what the loop allocated). */
  newSpaceDelta: number;
  /** heapUsed after minus before, bytes. */
  heapDelta: number;
  /** Garbage collections observed during the loop. */
  gcCount: number;
}

const BATCH = 1000;

/** CPU ns of one iteration of a trivial integer loop: a yardstick for how fast this machine is right now. */
function calibrate(): number {
  const f = (n: number): number => { let s = 0; for (let i = 0; i < n; i++) s = (s + i * 3) | 0; return s; };
  f(1e6);
  const c0 = process.cpuUsage();
  const r = f(2e8);
  const c = process.cpuUsage(c0);
  if (r === 0.5) console.log(r);
  return ((c.user + c.system) * 1000) / 2e8;
}

/** CPU nanoseconds per packet of `batch(n)` (n packets per call), over about `ms` of wall time. */
function cpuNs(batch: (n: number) => number, n: number, ms: number): number {
  let s = 0;
  for (let i = 0; i < 20; i++) s ^= batch(n);
  let calls = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 10; i++) s ^= batch(n);
    calls += 10;
  }
  const c = process.cpuUsage(c0);
  if (s === 0.5) console.log(s);
  return ((c.user + c.system) * 1000) / (calls * n);
}

/** A slot with an inner Ethernet/IPv4/UDP frame of `len` bytes at HEADROOM. */
function innerSlot(len: number): { buf: Buffer; len: number } {
  const buf = Buffer.alloc(SLOT_SIZE);
  const o = HEADROOM;
  emitEthernet(buf, o, 0x0ac613020000, 0x0ac613010000, EtherType.IPv4);
  emitIpv4(buf, o + 14, 0, len - 14, 1, 0x4000, 64, IpProto.UDP, 0xc6130105, 0xc6130205);
  emitUdp(buf, o + 34, 40000, 5201, len - 34);
  for (let i = o + 42; i < o + len; i++) buf[i] = i & 255;
  return { buf, len };
}

const gc = (globalThis as { gc?: () => void }).gc;

function newSpaceUsed(): number {
  for (const s of v8.getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_used_size;
  return 0;
}

/** Run `body(iterations)` and report allocation evidence. */
async function allocCheck(name: string, iterations: number, body: (n: number) => number): Promise<AllocRow> {
  body(Math.min(iterations, 200_000)); // warm up / optimise
  const starts: number[] = [];
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) starts.push(e.startTime); });
  obs.observe({ entryTypes: ['gc'] });
  if (gc) { gc(); gc(); }
  await new Promise((r) => setTimeout(r, 10));
  const h0 = process.memoryUsage().heapUsed;
  const n0 = newSpaceUsed();
  const t0 = performance.now();
  const sink = body(iterations);
  const t1 = performance.now();
  const n1 = newSpaceUsed();
  const h1 = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 50)); // deliver pending gc entries
  obs.disconnect();
  // Only collections that started while the loop ran.
  const gcs = starts.filter((s) => s >= t0 && s <= t1).length;
  if (sink === 0.5) console.log(sink);
  return { name, iterations, newSpaceDelta: n1 - n0, heapDelta: h1 - h0, gcCount: gcs };
}

/** Run the codec benchmark; returns one row per measurement. */
export async function runCodecBench(opts: CodecBenchOptions = {}): Promise<Row[]> {
  const time = opts.timeMs ?? 500;
  const allocN = opts.allocIterations ?? 10_000_000;
  const print = opts.print ?? true;

  // Fixtures.
  const small = innerSlot(98); // ICMP-echo-sized inner frame
  const big = innerSlot(1400);
  const tun = vxlanTunnel({ srcMac: 0x0200c6120001, dstMac: 0x0200c6120002, srcIp: 0xc6120001, dstIp: 0xc6120002, udpChecksum: true });
  const tunNoCsum = vxlanTunnel({ ...tun, udpChecksum: false });
  const res = new VxlanDecapResult();
  const decOpts = vxlanDecapOptions({ vni: 1 });
  // A full outer frame for decap (encapsulated once; decap does not modify it).
  const decBig = innerSlot(1400);
  const decBigOff = vxlanEncapFull(decBig.buf, HEADROOM, 1400, tun);
  const decBigLen = 1400 + VXLAN_IPV4_OVERHEAD;
  const decSmall = innerSlot(98);
  const decSmallOff = vxlanEncapFull(decSmall.buf, HEADROOM, 98, tunNoCsum);
  const decSmallLen = 98 + VXLAN_IPV4_OVERHEAD;
  // flannel UDP mode: bare IPv4 packet at HEADROOM.
  const fl = Buffer.alloc(SLOT_SIZE);
  emitIpv4(fl, HEADROOM, 0, 84, 1, 0x4000, 255, IpProto.ICMP, 0xc6130105, 0xc6130205);
  // A 64 KB-class TSO super-packet as the TUN hands it over (44 segments of MSS 1398, the most
  // one UDP GSO send takes at MTU 1450), segmented with the VXLAN L3 prefix (22 B) before each.
  const MSS = 1398, SEGS = 44;
  const sp = Buffer.alloc(70_000);
  const spLen = 40 + SEGS * MSS;
  emitIpv4(sp, 10, 0, spLen, 7, 0x4000, 64, IpProto.TCP, 0xc6130105, 0xc6130205);
  sp.writeUInt32BE(0x9c405014, 30); // ports 40000 -> 5140
  sp.writeUInt32BE(1000, 34); // seq
  sp[10 + 32] = 0x50; // data offset 5
  sp[10 + 33] = 0x10; // ACK
  sp.writeUInt16BE(502, 10 + 34);
  for (let i = 50; i < 10 + spLen; i++) sp[i] = (i * 7) & 255;
  emitVirtioTcpGso(sp, 0, 4, 20, 40, MSS);
  const spHdr = new VirtioNetHdr();
  if (spHdr.check(sp, 0, 10 + spLen) !== 'ok') throw new Error('bench fixture: virtio header');
  const segInfo = new SegmentInfo();
  const stage = Buffer.alloc(SEGS * (22 + 40 + MSS) + 64);
  const co = new TcpCoalescer();
  const coOut = Buffer.alloc(70_000);
  const segmentBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i += SEGS) {
      const r = gsoSegmentStrided(sp, 10, spLen, spHdr, stage, 0, 0, 22, segInfo);
      if (typeof r === 'number') s = (s + segInfo.total) | 0;
    }
    return s;
  };
  segmentBatch(SEGS);
  const coalesceBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i += SEGS) {
      co.reset();
      let o = 22;
      for (let k = 0; k < SEGS; k++) { co.add(stage, o, k === SEGS - 1 ? segInfo.lastLen : segInfo.segLen); o += segInfo.stride; }
      for (let j = 0; j < co.count; j++) s = (s + co.write(j, coOut, 0)) | 0;
    }
    return s;
  };
  if (coalesceBatch(SEGS) !== 10 + spLen) throw new Error('bench fixture: the segments did not coalesce back into one super-packet');
  const OFF_BATCH = SEGS * 20;

  const ck1400 = Buffer.alloc(1400 + 8, 0x5a);
  const ck64k = Buffer.alloc(65536 + 8, 0xa5);

  let sink = 0;
  const socketBatch = (n: number): number => {
    const b = small.buf;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const o = vxlanEncapSocket(b, HEADROOM, 1);
      if (vxlanDecapSocket(b, o, small.len + 8, 1, res) === 'ok') s = (s + res.len) | 0;
    }
    return s;
  };
  const fullBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s = (s + vxlanEncapFull(big.buf, HEADROOM, big.len, tun)) | 0;
    return s;
  };
  const fullNoCsumBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s = (s + vxlanEncapFull(small.buf, HEADROOM, small.len, tunNoCsum)) | 0;
    return s;
  };
  const decapBigBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) if (vxlanDecapFrame(decBig.buf, decBigOff, decBigLen, decOpts, res) === 'ok') s = (s + res.len) | 0;
    return s;
  };
  const decapSmallBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) if (vxlanDecapFrame(decSmall.buf, decSmallOff, decSmallLen, decOpts, res) === 'ok') s = (s + res.len) | 0;
    return s;
  };
  const flannelBatch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      if ((i & 127) === 0) { fl[HEADROOM + 8] = 255; ipv4FillChecksum(fl, HEADROOM); }
      if (flannelUdpValidate(fl, HEADROOM, 84) === 'ok' && flannelDecrementTtl(fl, HEADROOM) === 'ok') s = (s + 1) | 0;
    }
    return s;
  };
  const ck1400Batch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s ^= onesSum(ck1400, 2, 1400);
    return s;
  };
  const CK64_BATCH = 20;
  const ck64Batch = (n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s ^= onesSum(ck64k, 0, 65536);
    return s;
  };

  const bench = new Bench({ time, warmup: true, warmupTime: 100 });
  bench
    .add('socket-form VXLAN encap + decap (98 B inner)', () => { sink ^= socketBatch(BATCH); })
    .add('full-form IPv4 encap, UDP checksum (1400 B inner)', () => { sink ^= fullBatch(BATCH); })
    .add('full-form IPv4 encap, no UDP checksum (98 B inner)', () => { sink ^= fullNoCsumBatch(BATCH); })
    .add('decap + validation, UDP checksum verified (1400 B)', () => { sink ^= decapBigBatch(BATCH); })
    .add('decap + validation, zero UDP checksum (98 B)', () => { sink ^= decapSmallBatch(BATCH); })
    .add('flannel UDP mode: validate + TTL decrement', () => { sink ^= flannelBatch(BATCH); })
    .add('checksum 1400 B', () => { sink ^= ck1400Batch(BATCH); })
    .add('checksum 64 KiB', () => { sink ^= ck64Batch(CK64_BATCH); })
    .add('TSO segment for UDP GSO (64 KB super-packet, per segment)', () => { sink ^= segmentBatch(OFF_BATCH); })
    .add('GRO coalesce + write (44 segments, per segment)', () => { sink ^= coalesceBatch(OFF_BATCH); });
  await bench.run();

  type Meta = { n: number; fn: (n: number) => number; bytes?: number; goal?: string; goalNs?: number; goalGBs?: number };
  const per: Record<string, Meta> = {
    'socket-form VXLAN encap + decap (98 B inner)': { n: BATCH, fn: socketBatch, goal: '< 30 ns', goalNs: 30 },
    'full-form IPv4 encap, UDP checksum (1400 B inner)': { n: BATCH, fn: fullBatch },
    'full-form IPv4 encap, no UDP checksum (98 B inner)': { n: BATCH, fn: fullNoCsumBatch },
    'decap + validation, UDP checksum verified (1400 B)': { n: BATCH, fn: decapBigBatch },
    'decap + validation, zero UDP checksum (98 B)': { n: BATCH, fn: decapSmallBatch },
    'flannel UDP mode: validate + TTL decrement': { n: BATCH, fn: flannelBatch },
    'checksum 1400 B': { n: BATCH, fn: ck1400Batch, bytes: 1400, goal: '> 3 GB/s', goalGBs: 3 },
    'checksum 64 KiB': { n: CK64_BATCH, fn: ck64Batch, bytes: 65536, goal: '> 3 GB/s', goalGBs: 3 },
    'TSO segment for UDP GSO (64 KB super-packet, per segment)': { n: OFF_BATCH, fn: segmentBatch, bytes: MSS },
    'GRO coalesce + write (44 segments, per segment)': { n: OFF_BATCH, fn: coalesceBatch, bytes: MSS },
  };
  const rows: Row[] = [];
  for (const t of bench.tasks) {
    const r = t.result;
    const meta = per[t.name]!;
    if (!r || !('latency' in r)) throw new Error(`bench task ${t.name} failed`);
    const meanMs = r.latency.mean;
    const ns = (meanMs * 1e6) / meta.n;
    const cpu = cpuNs(meta.fn, meta.n, Math.min(300, time));
    const row: Row = { name: t.name, nsPerPacket: ns, perSec: 1e9 / ns, rme: r.latency.rme, cpuNsPerPacket: cpu };
    if (meta.bytes) row.gbPerSec = meta.bytes / ns;
    if (meta.goal) {
      row.goal = meta.goal;
      // Judged on CPU time (wall time on a shared machine includes time spent descheduled).
      row.met = meta.goalNs !== undefined ? cpu < meta.goalNs : (meta.bytes ?? 0) / cpu > (meta.goalGBs ?? 0);
    }
    rows.push(row);
  }

  // Sanity: the fixtures still decode.
  if (vxlanDecapFrame(decBig.buf, decBigOff, decBigLen, decOpts, res) !== 'ok') throw new Error('bench sanity: decap failed');

  const allocs: AllocRow[] = [];
  allocs.push(await allocCheck('socket-form encap + decap', allocN, socketBatch));
  allocs.push(await allocCheck('full-form encap + frame decap (98 B, no UDP csum)', allocN, (n) => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      small.buf[HEADROOM + 35] = i & 255; // vary the inner flow so the flow hash varies
      const o = vxlanEncapFull(small.buf, HEADROOM, small.len, tunNoCsum);
      if (vxlanDecapFrame(small.buf, o, small.len + VXLAN_IPV4_OVERHEAD, decOpts, res) === 'ok') s = (s + res.len) | 0;
    }
    return s;
  }));
  allocs.push(await allocCheck('full-form encap, UDP csum, 1400 B', Math.max(1, Math.floor(allocN / 5)), fullBatch));
  allocs.push(await allocCheck('flannel validate + TTL decrement', allocN, flannelBatch));
  allocs.push(await allocCheck('TSO segment (per segment)', Math.max(SEGS, Math.floor(allocN / 20)), segmentBatch));
  allocs.push(await allocCheck('GRO coalesce + write (per segment)', Math.max(SEGS, Math.floor(allocN / 20)), coalesceBatch));

  const yardstick = calibrate();
  if (print) {
    console.log(`\ncodec benchmark (node ${process.version}, ${BATCH} packets per tinybench sample; ns/packet = mean / ${BATCH})`);
    console.log(`machine yardstick: one trivial integer-loop iteration = ${yardstick.toFixed(2)} ns CPU (an idle modern x86 core: ~0.3-0.5 ns)`);
    console.log(`checksum primitives: ${nativeChecksums ? 'the addon\'s (as in overlayd)' : 'TypeScript (addon not built)'}\n`);
    console.log('| operation | ns/packet (wall) | ±% | ns/packet (CPU) | Mpps (CPU) | GB/s (CPU) | goal |');
    console.log('|---|---:|---:|---:|---:|---:|---|');
    for (const r of rows) {
      const goal = r.goal ? `${r.goal} ${r.met ? 'met' : 'NOT met'}` : '';
      const gbs = r.gbPerSec !== undefined ? (r.gbPerSec * r.nsPerPacket / r.cpuNsPerPacket).toFixed(2) : '';
      console.log(`| ${r.name} | ${r.nsPerPacket.toFixed(1)} | ${r.rme.toFixed(1)} | ${r.cpuNsPerPacket.toFixed(1)} | ${(1e3 / r.cpuNsPerPacket).toFixed(2)} | ${gbs} | ${goal} |`);
    }
    console.log(`\nzero-allocation check${gc ? ' (--expose-gc: GC forced before each loop)' : ''}\n`);
    console.log('| loop | iterations | new-space delta (B) | B/iteration | heapUsed delta (B) | GCs during loop |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const a of allocs) {
      const per = a.gcCount === 0 ? (a.newSpaceDelta / a.iterations).toFixed(5) : 'n/a (GC ran)';
      console.log(`| ${a.name} | ${a.iterations.toLocaleString('en-US')} | ${a.newSpaceDelta} | ${per} | ${a.heapDelta} | ${a.gcCount} |`);
    }
  }
  if (sink === 0.5) console.log(sink);
  lastAllocRows = allocs;
  return rows;
}

let lastAllocRows: AllocRow[] = [];

/** Allocation rows of the most recent {@link runCodecBench} call. */
export function lastCodecAllocRows(): AllocRow[] {
  return lastAllocRows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runCodecBench();
}
