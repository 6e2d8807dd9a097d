/**
 * What the demo needs from the machine, checked before it starts anything, so that a missing
 * tool is one line naming the Debian packages to install rather than a failure deep inside.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/** Commands the demo runs, and the Debian package of each. */
export const DEMO_TOOLS: Readonly<Record<string, string>> = { ip: 'iproute2', bridge: 'iproute2', ping: 'iputils-ping', iperf3: 'iperf3' };

/** What the demo's etcd mode (its default) runs besides: etcd itself and etcdctl, from Debian's etcd 3.4. */
export const ETCD_TOOLS: Readonly<Record<string, string>> = { etcd: 'etcd-server', etcdctl: 'etcd-client' };

/** True when `cmd` is an executable file in one of `path`'s directories. */
export function onPath(cmd: string, path = process.env.PATH ?? ''): boolean {
  return path.split(':').filter(Boolean).some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** One line naming the missing commands and the Debian packages that have them, or undefined when none is missing. */
export function missingToolsLine(has: (cmd: string) => boolean = (c) => onPath(c), tools: Readonly<Record<string, string>> = DEMO_TOOLS): string | undefined {
  const missing = Object.keys(tools).filter((t) => !has(t));
  if (missing.length === 0) return undefined;
  const pkgs = [...new Set(missing.map((t) => tools[t]!))];
  return `needs ${missing.join(', ')}: apt-get install -y ${pkgs.join(' ')}`;
}
