/**
 * Peers-file scale (issue #13): time to parse a peers file of N leases in flannel's layout, and
 * the time overlayd's diff takes for a one-line change; then the time a backend takes to add N
 * peers one by one and to apply one more change (in-memory device and socket, no kernel).
 *
 *   npx tsx bench/peers.ts [N ...]      (default 1000 2500 5000 10000 20000)
 */
import { diffPeers, parsePeers } from '../src/overlayd/config.js';
import { ipPrefix } from '../src/codec/addr.js';
import { UdpBackend, VxlanBackend } from '../src/vtep/index.js';
import { FakeIo, nullKernel } from '../test/vtep/fakes.js';

const net = ipPrefix('198.18.0.0/15');
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);

/** A peers file of `n` /30 leases inside 198.18.0.0/15 (vxlan, as flanneld writes them). */
function peersText(n: number): string {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const a = i * 4;
    o[`198.${18 + (a >> 16)}.${(a >> 8) & 255}.${a & 255}-30`] = { PublicIP: `198.18.${(i >> 8) & 255}.${i & 255}`, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` } };
  }
  return JSON.stringify(o);
}

function ms(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

console.log('| leases | file (KiB) | parse (ms) | one-line change: parse + diff (ms) |');
console.log('|---:|---:|---:|---:|');
const N = sizes.length > 0 ? sizes : [1000, 2500, 5000, 10000, 20000];
for (const n of N) {
  const text = peersText(n);
  parsePeers(text, 'bench', net); // warm up
  let prev = new Map();
  const parse = ms(() => { prev = parsePeers(text, 'bench', net); });
  const edited = text.replace('"PublicIP":"198.18.0.1"', '"PublicIP":"198.18.0.201"');
  let diffMs = 0;
  diffMs = ms(() => { const next = parsePeers(edited, 'bench', net); const d = diffPeers(prev, next); if (d.upsert.length !== 1) throw new Error('diff'); });
  console.log(`| ${n} | ${(text.length / 1024).toFixed(0)} | ${parse.toFixed(1)} | ${diffMs.toFixed(1)} |`);
}

console.log('\n| backend | peers | add all, one by one (ms) | one more change (ms) |');
console.log('|---|---:|---:|---:|');
for (const kind of ['vxlan', 'udp'] as const) {
  for (const n of N) {
    const io = new FakeIo();
    const common = { subnet: '198.18.0.0/30', network: '198.18.0.0/15', publicIp: '198.19.255.254', io, kernel: nullKernel };
    const b = kind === 'vxlan' ? new VxlanBackend({ ...common, vtepMac: '02:00:00:00:00:01' }) : new UdpBackend(common);
    await b.start();
    const lease = (i: number, pub: string): Parameters<typeof b.addPeer>[0] => {
      const a = i * 4;
      const mac = `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      return { subnet: `198.${18 + (a >> 16)}.${(a >> 8) & 255}.${a & 255}/30`, publicIp: pub, backendType: kind, vni: 1, vtepMac: mac };
    };
    const all = ms(() => { for (let i = 1; i <= n; i++) b.addPeer(lease(i, `198.19.${(i >> 8) & 255}.${i & 255}`)); });
    const one = ms(() => b.addPeer(lease(1, '198.19.250.1')));
    console.log(`| ${kind} | ${n} | ${all.toFixed(0)} | ${one.toFixed(2)} |`);
    await b.stop();
  }
}
