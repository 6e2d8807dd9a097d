/** Checks shared by the L2 (TAP) interop tests (kept out of harness.ts, which the benchmark imports outside vitest). */
import { expect } from 'vitest';
import type { NsHost } from '../helpers/netns.js';
import { ping } from './harness.js';

/**
 * The L2 bed's first check (ours at 198.19.1.0, MAC 02:00:00:00:01:01 on `a`; the kernel at
 * 198.19.2.0, 02:00:00:00:02:02 on `b`; device `dev` on both): each side's ARP resolves the other
 * through the tunnel, then pings of `sizes` go both ways.
 */
export function expectArpAndPings(a: NsHost, b: NsHost, dev: string, sizes: number[]): void {
  expect(ping(a, '198.19.2.0', 56)).toBe(true);
  expect(a.ip('neigh', 'show', '198.19.2.0', 'dev', dev)).toMatch(/lladdr 02:00:00:00:02:02/);
  expect(ping(b, '198.19.1.0', 56)).toBe(true);
  expect(b.ip('neigh', 'show', '198.19.1.0', 'dev', dev)).toMatch(/lladdr 02:00:00:00:01:01/);
  for (const size of sizes) {
    expect(ping(a, '198.19.2.0', size), `ours -> kernel, ${size}`).toBe(true);
    expect(ping(b, '198.19.1.0', size), `kernel -> ours, ${size}`).toBe(true);
  }
}
