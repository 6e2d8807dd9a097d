/**
 * Child-process probe for the allocation test: warms up a hot path, then runs it
 * 4M times between markers; the parent runs this under --trace-gc and counts
 * scavenges between the markers (any per-lookup allocation would cause dozens).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { HostModel, RouteTable6, NeighbourTable, NeighbourTable6 } from '../../src/fdb/index.js';

const which = process.argv[2] ?? 'resolve';
const hm = new HostModel({ vni: 1 });
for (let i = 0; i < 1000; i++) hm.addHost({ subnet: `10.${i >> 8}.${i & 255}.0/24`, publicIp: (0xc6120000 + i) >>> 0, vtepMac: 0x0e0000000000 + i });
const r6 = new RouteTable6();
for (let i = 0; i < 1000; i++) r6.add({ dst: `2001:db8:${i.toString(16)}::/48`, dev: 'flannel-v6.1' });
const n6 = new NeighbourTable6();
for (let i = 0; i < 1000; i++) n6.add({ ip: `2001:db8:${i.toString(16)}::1`, lladdr: 0x0e0000000000 + i, dev: 'flannel-v6.1' });
n6.addProxy('2001:db8:ffff::1', 'flannel-v6.1');
// IPv4 addresses >= 2^31: passed as int32 (as the dataplane does), they come back as uint32 doubles in the view's ip, which must be written without boxing
const n4 = new NeighbourTable({ proxyMac: 0x0e0000000001 });
for (let i = 0; i < 1000; i++) n4.add({ ip: (0xc6130000 + i * 256) >>> 0, lladdr: 0x0e0000000000 + i, dev: 'flannel.1', state: 'reachable' });
n4.addProxy('198.18.0.1', 'flannel.1');
// learned entries (the ageing check reads the clock on every lookup/refresh)
for (let i = 0; i < 1000; i++) hm.fdb.learn(1, 0x0a0000000000 + i, (0xc6130000 + i) >>> 0, 8472);
const frame = new Uint8Array(6);
const a6 = new Uint8Array(16);
a6.set([0x20, 0x01, 0x0d, 0xb8]);
let s = 0;
const run = (): void => {
  for (let i = 0; i < 200_000; i++) {
    const k = i % 1000;
    if (which === 'route') s += hm.routes.lookup((0x0a000000 + k * 256 + 9) >>> 0)!.prefixLen;
    else if (which === 'route6') {
      a6[4] = k >> 8;
      a6[5] = k & 255;
      s += r6.lookup(a6, 0)!.prefixLen;
    } else if (which === 'neigh6') {
      a6[4] = k >> 8;
      a6[5] = k & 255;
      a6[15] = 1;
      s += n6.lookup(a6, 0)!.state.length;
    } else if (which === 'neigh6-mac') {
      a6[4] = k >> 8;
      a6[5] = k & 255;
      a6[15] = 1;
      s += n6.lookupMacInto(a6, frame, 0, 0) ? frame[5]! + 1 : 0;
    } else if (which === 'neigh6-proxy') {
      a6[4] = k >> 8;
      a6[5] = k & 255;
      a6[15] = 1;
      s += n6.proxyLookup(a6, 0)!.state.length;
    } else if (which === 'neigh-hi') s += n4.proxyLookup((0xc6130000 + k * 256) | 0)!.ip > 0x80000000 ? 1 : 0;
    else if (which === 'neigh') s += hm.neigh.lookup((0x0a000000 + k * 256) >>> 0)!.state.length;
    else if (which === 'fdb') s += hm.fdb.lookup(1, 0x0e0000000000 + k)!.dests.length;
    else if (which === 'neigh-mac') s += hm.neigh.lookupMacInto((0x0a000000 + k * 256) >>> 0, frame, 0) ? frame[5]! + 1 : 0;
    else if (which === 'fdb-bytes') {
      frame[0] = 0x0e; frame[1] = 0; frame[2] = 0; frame[3] = 0; frame[4] = k >> 8; frame[5] = k & 255;
      s += hm.fdb.lookupBytes(1, frame, 0)!.dests[0]!.port + 1;
    } else if (which === 'fdb-learned') s += hm.fdb.lookup(1, 0x0a0000000000 + k)!.dests.length;
    else if (which === 'learn-refresh') {
      frame[0] = 0x0a; frame[1] = 0; frame[2] = 0; frame[3] = 0; frame[4] = k >> 8; frame[5] = k & 255;
      s += hm.fdb.learnBytes(1, frame, 0, (0xc6130000 + k) | 0, 8472) === 'refreshed' ? 1 : 0;
    } else if (which === 'learn') s += hm.fdb.learn(1, 0x0a0000000000 + k, (0xc6130000 + k) | 0, 8472) === 'refreshed' ? 1 : 0;
    else if (which === 'fdb-default') s += hm.fdb.lookup(1, 0xffffffffffff)?.dests.length ?? 1;
    else s += hm.resolve((0x0a000000 + k * 256 + 9) >>> 0)!.dests.length;
  }
};
// Warm up until V8 has optimized the path: under load the optimizing compiler (which runs
// concurrently) finishes late, and unoptimized code boxes numbers. Rounds of warm-up repeat until
// one runs without a collection (at most 30); a real per-lookup allocation never gets there, and
// the measured runs below still catch it.
let gcs = 0;
const obs = new PerformanceObserver((list) => { gcs += list.getEntries().length; });
obs.observe({ entryTypes: ['gc'] });
void (async () => {
  for (let i = 0; i < 30; i++) {
    const before = gcs;
    for (let k = 0; k < 5; k++) run();
    await new Promise((r) => setTimeout(r, 10)); // gc entries arrive asynchronously
    if (i > 0 && gcs === before) break;
  }
  obs.disconnect();
  console.log('--- measure');
  for (let k = 0; k < 20; k++) run();
  console.log('--- end', s > 0);
})();
