import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const probe = fileURLToPath(new URL('./alloc-probe.ts', import.meta.url));

/** Scavenges while the probe runs its hot path 4M times (under --trace-gc). */
function scavenges(which: string): number {
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--trace-gc', probe, which], { encoding: 'utf8', timeout: 60_000 });
  const a = out.indexOf('--- measure');
  const b = out.indexOf('--- end true');
  expect(a).toBeGreaterThanOrEqual(0);
  expect(b).toBeGreaterThan(a);
  return (out.slice(a, b).match(/Scavenge|Mark-Compact|Mark-sweep/g) ?? []).length;
}

describe('hot paths do not allocate (4M lookups, --trace-gc in a child)', () => {
  for (const w of ['route', 'route6', 'neigh', 'neigh-mac', 'neigh6', 'neigh6-mac', 'neigh6-proxy', 'neigh-hi', 'fdb', 'fdb-bytes', 'fdb-learned', 'fdb-default', 'learn-refresh', 'resolve']) {
    it(w, () => {
      expect(scavenges(w)).toBe(0);
    });
  }
});
