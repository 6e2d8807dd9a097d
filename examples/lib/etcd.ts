/**
 * A real etcd (Debian's etcd-server, /usr/bin/etcd) for the demo and the tests: a temporary data
 * directory, free loopback ports for the client and peer URLs (or a given address, e.g. inside a
 * namespace), started and waited for until it answers; stop() kills it and removes the directory,
 * and is safe to call twice. Callers call stop() in finally/afterAll.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NsHost } from './netns.js';

/** The etcd binary. */
export const ETCD_BIN = process.env.ETCD_BIN ?? (existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : 'etcd');

/** Run etcdctl (v3 API) against `url`; returns stdout. */
export function etcdctl(url: string, ...args: string[]): string {
  return execFileSync('etcdctl', ['--endpoints', url, ...args], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000, env: { ...process.env, ETCDCTL_API: '3' } });
}

/** A free TCP port on 127.0.0.1 (bound and released; the small race is acceptable in tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** GET `url` with a short timeout: the status, or 0 when nothing answered. */
function get(url: string, ms = 500, tls?: { cert: string; key: string; ca: string }): Promise<number> {
  return new Promise((resolve) => {
    const o = tls ? { timeout: ms, ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : { timeout: ms };
    const req = (tls ? httpsRequest : request)(url, o, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Options of {@link startEtcd}. */
export interface EtcdOptions {
  /** Run inside this namespace (its loopback must be up); default: the caller's own namespace. */
  ns?: NsHost;
  /** Client listen address (default 127.0.0.1). */
  host?: string;
  /** Fixed ports (default: free ones on 127.0.0.1; inside a namespace: 2379/2380). */
  clientPort?: number;
  peerPort?: number;
  /** Serve https with these PEM files, requiring a client certificate signed by `ca`. */
  tls?: { cert: string; key: string; ca: string };
  /** More etcd flags. */
  args?: string[];
  /** Make the temporary data directory under this directory (default: the system's tmpdir). */
  parentDir?: string;
}

/** A running etcd. */
export class LocalEtcd {
  private child: ChildProcess | undefined;
  private log = '';
  private gone = false;

  constructor(readonly dir: string, readonly host: string, readonly clientPort: number, readonly peerPort: number, private readonly o: EtcdOptions = {}) {}

  private get ns(): NsHost | undefined {
    return this.o.ns;
  }

  /** The client URL. */
  get url(): string {
    return `${this.o.tls ? 'https' : 'http'}://${this.host}:${this.clientPort}`;
  }

  /** Run etcdctl (v3 API) against this etcd, inside its namespace when it has one; returns stdout. */
  ctl(...args: string[]): string {
    return this.ns ? this.ns.exec('etcdctl', ['--endpoints', this.url, ...args], { timeout: 10_000 }) : etcdctl(this.url, ...args);
  }

  /** etcd's output so far (for failure messages). */
  output(): string {
    return this.log;
  }

  /** Start (or start again after {@link kill}, with the same data and ports); resolves once healthy. */
  async start(timeoutMs = 20_000): Promise<void> {
    const args = [
      '--name', 'test', '--data-dir', join(this.dir, 'data'),
      '--listen-client-urls', this.url, '--advertise-client-urls', this.url,
      '--listen-peer-urls', `http://127.0.0.1:${this.peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${this.peerPort}`,
      '--initial-cluster', `test=http://127.0.0.1:${this.peerPort}`, '--listen-metrics-urls', '',
      '--log-level', 'warn', '--logger', 'zap', '--quota-backend-bytes', String(1 << 30),
      ...(this.o.tls ? ['--cert-file', this.o.tls.cert, '--key-file', this.o.tls.key, '--trusted-ca-file', this.o.tls.ca, '--client-cert-auth'] : []),
      ...(this.o.args ?? []),
    ];
    this.child = this.ns ? this.ns.spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const add = (d: Buffer): void => { if (this.log.length < 1 << 20) this.log += d.toString(); };
    this.child.stdout!.on('data', add);
    this.child.stderr!.on('data', add);
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`etcd exited (${this.child.exitCode}): ${this.log.slice(-2000)}`);
      if (this.ns) {
        try { this.ns.exec('etcdctl', ['--endpoints', this.url, '--dial-timeout', '1s', 'endpoint', 'health'], { timeout: 3000 }); return; } catch { /* not yet */ }
      } else if ((await get(`${this.url}/health`, 500, this.o.tls)) === 200) {
        return;
      }
      if (Date.now() > end) throw new Error(`etcd not healthy in ${timeoutMs} ms: ${this.log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Kill etcd (SIGKILL), keeping its data for a later {@link start}. */
  async kill(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }

  /** Kill etcd and remove its directory. Never throws. */
  async stop(): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    try { await this.kill(); } catch { /* gone */ }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start a fresh etcd; call stop() in teardown. */
export async function startEtcd(o: EtcdOptions = {}): Promise<LocalEtcd> {
  const dir = mkdtempSync(join(o.parentDir ?? tmpdir(), 'od-etcd-'));
  const host = o.host ?? '127.0.0.1';
  const clientPort = o.clientPort ?? (o.ns ? 2379 : await freePort());
  const peerPort = o.peerPort ?? (o.ns ? 2380 : await freePort());
  const e = new LocalEtcd(dir, host, clientPort, peerPort, o);
  try {
    await e.start();
  } catch (err) {
    await e.stop();
    throw err;
  }
  return e;
}
