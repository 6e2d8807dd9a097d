/**
 * `--ip-masq`: flanneld's masquerade rules as one nftables table, applied atomically.
 *
 * The rules are flannel's (pkg/trafficmngr: the FLANNEL-POSTRTG chain), for our one Network:
 * traffic kube-proxy marked (0x4000) is left alone; traffic between our pod subnet and the
 * cluster network, both ways, is not translated; traffic from outside the cluster to our pods is
 * not translated; traffic from the cluster network to anywhere outside it (multicast excepted) is
 * masqueraded; and so is traffic from outside the cluster network (the host itself) into it.
 * Ports are chosen fully at random unless `--ip-masq-fully-random-disable`.
 *
 * The whole table goes to `nft -f -` in one transaction (create, delete, define: the kernel
 * swaps it atomically, so there is never a moment with half the rules). It is checked every
 * `--iptables-resync` seconds and put back when someone removed it; stop() deletes it.
 */
import { execFile } from 'node:child_process';

/** The nftables table overlayd owns (family ip). */
export const IPMASQ_TABLE = 'overlayd';

/** kube-proxy's masquerade mark (flannel's KubeProxyMark, 0x4000/0x4000). */
const KUBE_PROXY_MARK = '0x4000';

/** What the rules are made from. */
export interface IpMasqRules {
  /** The cluster network (net-conf Network), CIDR. */
  network: string;
  /** This host's pod subnet (its lease), CIDR. */
  subnet: string;
  /** `masquerade fully-random` (default) or plain `masquerade`. */
  fullyRandom: boolean;
}

/** The nft script that replaces our table with the masquerade rules, atomically (one transaction). */
export function masqRuleset(r: IpMasqRules, table = IPMASQ_TABLE): string {
  const masq = r.fullyRandom ? 'masquerade fully-random' : 'masquerade';
  const net = r.network;
  const pod = r.subnet;
  return [
    `table ip ${table}`, // so that the delete below never fails
    `delete table ip ${table}`,
    `table ip ${table} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    meta mark & ${KUBE_PROXY_MARK} == ${KUBE_PROXY_MARK} return comment "kube-proxy marked it: no double NAT"`,
    `    ip saddr ${pod} ip daddr ${net} return comment "our pods to the cluster network"`,
    `    ip saddr ${net} ip daddr ${pod} return comment "the cluster network to our pods"`,
    `    ip saddr != ${net} ip daddr ${pod} return comment "outside to our pods"`,
    `    ip saddr ${net} ip daddr != 224.0.0.0/4 ${masq} comment "the cluster network to outside it (not multicast)"`,
    `    ip saddr != ${net} ip daddr ${net} ${masq} comment "outside (the host) into the cluster network"`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Run nft with `args` (and `input` on stdin); rejects with nft's own one-line message. */
function nft(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) {
        const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'nft not found (install Debian\'s nftables package)' : (stderr.trim().split('\n')[0] || err.message);
        reject(new Error(`nft ${args.join(' ')}: ${why}`));
      } else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Options of {@link IpMasq}. */
export interface IpMasqOptions extends IpMasqRules {
  /** Check every this many seconds that the table is still there (0: never). */
  resyncSeconds: number;
  /** Where "re-applied" and check failures go. */
  log: { info(m: string): void; error(m: string): void };
}

/** Our masquerade table: applied by start(), kept in place, removed by stop(). */
export class IpMasq {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** Times the table was found missing and put back. */
  reapplied = 0;

  constructor(private readonly opts: IpMasqOptions) {}

  /** Apply the table (rejects when nft fails: nothing is left half applied). */
  async start(): Promise<void> {
    await nft(['-f', '-'], masqRuleset(this.opts));
    if (this.opts.resyncSeconds > 0) {
      this.timer = setInterval(() => void this.check(), this.opts.resyncSeconds * 1000);
      this.timer.unref();
    }
  }

  /** Put the table back if it is gone (or its chain is); resolves true when it had to. */
  async check(): Promise<boolean> {
    if (this.checking) return false;
    this.checking = true;
    try {
      try {
        await nft(['list', 'chain', 'ip', IPMASQ_TABLE, 'postrouting']);
        return false;
      } catch {
        await nft(['-f', '-'], masqRuleset(this.opts));
        this.reapplied++;
        this.opts.log.info(`ip-masq: nftables table ip ${IPMASQ_TABLE} was removed by someone else; re-applied`);
        return true;
      }
    } catch (e) {
      this.opts.log.error(`ip-masq: ${(e as Error).message}`);
      return false;
    } finally {
      this.checking = false;
    }
  }

  /** Stop checking and delete the table (a missing table is fine). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await nft(['-f', '-'], `table ip ${IPMASQ_TABLE}\ndelete table ip ${IPMASQ_TABLE}\n`).catch((e: Error) => this.opts.log.error(`ip-masq: ${e.message}`));
  }
}
