/**
 * Peers-file scale (issue #13): time to parse a peers file of N leases in flannel's layout, and
 * the time overlayd's diff takes for a one-line change, in this process (no daemon, no kernel).
 *
 *   npx tsx bench/peers.ts [N ...]      (default 1000 2500 5000 10000 20000)
 */
import { diffPeers, parsePeers } from '../src/overlayd/config.js';
import { ipPrefix } from '../src/codec/addr.js';

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
for (const n of sizes.length > 0 ? sizes : [1000, 2500, 5000, 10000, 20000]) {
  const text = peersText(n);
  parsePeers(text, 'bench', net); // warm up
  let prev = new Map();
  const parse = ms(() => { prev = parsePeers(text, 'bench', net); });
  const edited = text.replace('"PublicIP":"198.18.0.1"', '"PublicIP":"198.18.0.201"');
  let diffMs = 0;
  diffMs = ms(() => { const next = parsePeers(edited, 'bench', net); const d = diffPeers(prev, next); if (d.upsert.length !== 1) throw new Error('diff'); });
  console.log(`| ${n} | ${(text.length / 1024).toFixed(0)} | ${parse.toFixed(1)} | ${diffMs.toFixed(1)} |`);
}
