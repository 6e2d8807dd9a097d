/**
 * Network-namespace hosts for the demo, the benchmark and the tests. Every namespace
 * gets a unique per-run prefix; `destroy()` kills what runs inside and deletes them all,
 * and callers run it in `finally`, even on failure. Only 198.18.0.0/15 addresses are
 * used inside them (underlay 198.18.x.x, overlay 198.19.x.x).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Run a command, return stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], opts: { input?: string | Buffer; timeout?: number; cwd?: string } = {}): string {
  return execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8', input: opts.input, timeout: opts.timeout ?? 30_000, cwd: opts.cwd });
}

/** A test host: one network namespace. */
export class NsHost {
  constructor(readonly name: string) {}
  /** Run a command inside the namespace and return stdout. */
  exec(cmd: string, args: string[] = [], opts: { input?: string | Buffer; timeout?: number } = {}): string {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }
  /** Run `ip <args>` in the namespace. */
  ip(...args: string[]): string {
    return sh('ip', ['-n', this.name, ...args]);
  }
  /** Start a long-running process inside the namespace. */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe', ...opts });
  }
}

/**
 * A set of namespace hosts for one test file. Call `host()` to add hosts,
 * `link()` to connect them, and `destroy()` in afterAll/finally.
 */
export class Testbed {
  readonly prefix: string;
  private hosts: NsHost[] = [];
  private children: ChildProcess[] = [];

  constructor(tag = 'ns') {
    // Unique per run: tag + pid + random, kept short (IFNAMSIZ limits device names, not netns names).
    this.prefix = `${tag}${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  }

  /** Create a namespace host named `<prefix>-<suffix>` with loopback up. */
  host(suffix: string): NsHost {
    const h = new NsHost(`${this.prefix}-${suffix}`);
    sh('ip', ['netns', 'add', h.name]);
    this.hosts.push(h);
    h.ip('link', 'set', 'lo', 'up');
    return h;
  }

  /** Connect two hosts with a veth pair; assign `a/b` CIDRs (198.18.x.x) and bring both up. */
  link(a: NsHost, aDev: string, aCidr: string, b: NsHost, bDev: string, bCidr: string, mtu = 1500): void {
    sh('ip', ['link', 'add', aDev, 'netns', a.name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', bDev, 'netns', b.name, 'mtu', String(mtu)]);
    a.ip('addr', 'add', aCidr, 'dev', aDev);
    b.ip('addr', 'add', bCidr, 'dev', bDev);
    a.ip('link', 'set', aDev, 'up');
    b.ip('link', 'set', bDev, 'up');
  }

  /** Create a bridge host `sw` and attach each host with a veth, giving a shared L2 underlay. */
  lan(hosts: { host: NsHost; dev: string; cidr: string }[], mtu = 1500): NsHost {
    const sw = this.host('sw');
    sw.ip('link', 'add', 'br0', 'type', 'bridge');
    sw.ip('link', 'set', 'br0', 'up');
    hosts.forEach((h, i) => {
      const peer = `p${i}`;
      sh('ip', ['link', 'add', h.dev, 'netns', h.host.name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', peer, 'netns', sw.name, 'mtu', String(mtu)]);
      sw.ip('link', 'set', peer, 'master', 'br0');
      sw.ip('link', 'set', peer, 'up');
      h.host.ip('addr', 'add', h.cidr, 'dev', h.dev);
      h.host.ip('link', 'set', h.dev, 'up');
    });
    return sw;
  }

  /** Namespaces created so far. */
  names(): string[] {
    return this.hosts.map((h) => h.name);
  }

  /** Track a child process so destroy() kills it. */
  track(child: ChildProcess): ChildProcess {
    this.children.push(child);
    return child;
  }

  /** Kill tracked processes and delete every namespace of this testbed. Never throws. */
  destroy(): void {
    for (const c of this.children) {
      try { if (c.exitCode === null) c.kill('SIGKILL'); } catch { /* already gone */ }
    }
    for (const h of this.hosts) {
      // Kill anything still running inside, then delete the namespace.
      try { sh('ip', ['netns', 'pids', h.name]).split('\n').filter(Boolean).forEach((p) => { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }); } catch { /* gone */ }
      try { sh('ip', ['netns', 'del', h.name]); } catch { /* gone */ }
    }
    this.hosts = [];
  }
}
