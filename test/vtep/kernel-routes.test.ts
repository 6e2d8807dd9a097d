/**
 * RtnlNet pipelines route changes (each handed to the netlink socket without waiting for the
 * previous acknowledgement): thousands of replaces and deletes of the same routes, issued back to
 * back, must end exactly as if applied one by one, and flush() must wait for all of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';

const here = dirname(fileURLToPath(import.meta.url));

describe.runIf(requireNetns())('RtnlNet: pipelined route changes', () => {
  const tb = new Testbed('tnrt'); // 'tn': in .ci/run's cleanup list
  let h: NsHost;
  beforeAll(() => {
    h = tb.host('a');
    h.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  });
  afterAll(() => tb.destroy());

  it('3,000 replaces, 1,500 deletes, re-adds and a refused one end in the state of applying them in order', () => {
    const out = h.exec('node', ['--import', 'tsx', join(here, 'kernel-routes.ts')], { timeout: 60_000 }); // cwd: the repo root (tsx resolves from it)
    const r = JSON.parse(out.trim().split('\n').pop()!) as { failed: number; ms: number };
    expect(r.failed, 'only the bad prefix is refused').toBe(1);
    const routes = JSON.parse(h.ip('-j', 'route', 'show', 'dev', 'd0')) as { dst: string; gateway?: string }[];
    const got = new Map(routes.filter((x) => x.dst.startsWith('198.19.')).map((x) => [x.dst, x.gateway]));
    const want = new Map<string, string>();
    const dst = (i: number): string => `198.19.${i >> 8}.${i & 255}`;
    for (let i = 1; i < 3000; i += 2) want.set(dst(i), '198.18.0.2');
    for (let i = 0; i < 10; i += 2) want.set(dst(i), '198.18.0.3');
    want.set(dst(1), '198.18.0.4');
    want.set(dst(3001), '198.18.0.2');
    expect(got.size).toBe(want.size);
    for (const [d, g] of want) expect(got.get(d), d).toBe(g);
  });
});
