/**
 * Test child for kernel-routes.test.ts, run inside a namespace with a device `d0`: RtnlNet
 * route changes issued back to back (pipelined), then flush(). Prints one JSON line:
 * {"failed": N, "ms": T} (N changes rejected by the kernel).
 */
import { RtnlNet } from '../../src/vtep/kernel.js';

const k = new RtnlNet();
const dst = (i: number): string => `198.19.${i >> 8}.${i & 255}/32`;
const all: Promise<void>[] = [];
let failed = 0;
const t0 = Date.now();
const count = (p: Promise<void>): void => { all.push(p.catch(() => { failed++; })); };
await k.configureDevice('d0', { mtu: 1400, cidr: '198.18.0.1/24' });
for (let i = 0; i < 3000; i++) count(k.replaceRoute(dst(i), '198.18.0.2', 'd0'));
for (let i = 0; i < 3000; i += 2) count(k.deleteRoute(dst(i), 'd0'));
for (let i = 0; i < 10; i += 2) count(k.replaceRoute(dst(i), '198.18.0.3', 'd0')); // back, via another gateway
count(k.replaceRoute(dst(1), '198.18.0.4', 'd0')); // replaced in place
count(k.replaceRoute('198.19.255.0/33', '198.18.0.2', 'd0')); // refused (bad prefix): the rest still applies
count(k.replaceRoute(dst(3001), '198.18.0.2', 'd0'));
await k.flush();
await Promise.all(all);
process.stdout.write(JSON.stringify({ failed, ms: Date.now() - t0 }) + '\n');
process.exit(0);
