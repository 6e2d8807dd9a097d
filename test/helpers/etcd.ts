/**
 * etcd for tests: the etcd process itself (startEtcd, a temporary data directory, free loopback
 * ports or an address inside a test namespace) lives in examples/lib/etcd.ts, shared with the demo,
 * and is re-exported here; this adds flanneld's lease value, the CI check and a TCP relay.
 */
import { existsSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ETCD_BIN } from '../../examples/lib/etcd.js';

export { ETCD_BIN, etcdctl, freePort, startEtcd, LocalEtcd as TestEtcd, type EtcdOptions } from '../../examples/lib/etcd.js';

/** The value flanneld writes for a VXLAN lease (pkg/lease LeaseAttrs as Go's encoding/json writes it, IPv4 only). */
export function flannelValue(publicIp: string, vtepMac: string, vni = 1): string {
  return `{"PublicIP":"${publicIp}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":${vni},"VtepMAC":"${vtepMac}"}}`;
}

/** True when the etcd binary is installed. */
export function etcdAvailable(): boolean {
  const ok = existsSync(ETCD_BIN);
  if (!ok && process.env.CI === 'true') throw new Error(`${ETCD_BIN} is missing (.ci/run installs etcd-server)`);
  return ok;
}

/**
 * A TCP relay on a free loopback port to a real etcd, to cut a client off (a partition: open
 * connections reset, new ones closed at once) and let it through again, while etcd stays up.
 */
export class TcpRelay {
  private readonly socks = new Set<Socket>();
  private open = true;
  private constructor(private readonly server: Server, readonly port: number) {}

  /** Relay 127.0.0.1:<free port> to `target` ("host:port"). */
  static async start(target: string): Promise<TcpRelay> {
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    let relay: TcpRelay | undefined;
    const server = createServer((c) => {
      if (!relay!.open) { c.destroy(); return; }
      const u = connect(port, host);
      for (const [a, b] of [[c, u], [u, c]] as const) {
        relay!.socks.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => { relay!.socks.delete(a); b.destroy(); });
        a.pipe(b);
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    relay = new TcpRelay(server, typeof a === 'object' && a ? a.port : 0);
    return relay;
  }

  /** The URL clients use. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Cut every connection and refuse new ones. */
  cut(): void {
    this.open = false;
    for (const s of this.socks) s.destroy();
  }

  /** Let connections through again. */
  restore(): void {
    this.open = true;
  }

  /** Close the relay. */
  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}
