/**
 * Network-namespace test hosts: the shared Testbed (examples/lib/netns.ts) plus the
 * test-only guard. When namespaces cannot be made (not root, no CAP_NET_ADMIN) tests
 * skip, unless REQUIRE_NETNS=1, in which case they fail.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export { NsHost, Testbed, sh } from '../../examples/lib/netns.js';

let cached: boolean | undefined;

/** True when this process can create network namespaces. */
export function netnsAvailable(): boolean {
  if (cached !== undefined) return cached;
  try {
    if (process.getuid?.() !== 0) throw new Error('not root');
    const probe = `odprobe${process.pid}${randomBytes(2).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    cached = true;
  } catch {
    cached = false;
  }
  if (!cached && process.env.REQUIRE_NETNS === '1') {
    throw new Error('REQUIRE_NETNS=1 but network namespaces are unavailable (need root/CAP_NET_ADMIN and iproute2)');
  }
  return cached;
}

/**
 * `describe` guard: returns true if the suite should run; false (skip) when namespaces
 * are unavailable and REQUIRE_NETNS is not set. Throws when REQUIRE_NETNS=1 and unavailable.
 */
export function requireNetns(): boolean {
  return netnsAvailable();
}
