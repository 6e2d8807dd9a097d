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
 * IPv6 (dual stack, IPv6 only): the same rules for IPv6Network and our IPv6 subnet in a table of
 * family ip6 of the same name (multicast there is ff00::/8), as flanneld adds its IPv6 rules
 * beside the IPv4 ones; an IPv6-only network has the ip6 table alone.
 *
 * The whole table goes to `nft -f -` in one transaction (create, delete, define: the kernel
 * swaps it atomically, so there is never a moment with half the rules). It is checked every
 * `--iptables-resync` seconds and put back when someone removed it; stop() deletes it.
 */
import { execFile } from 'node:child_process';

/** The nftables table overlayd owns (family ip; and ip6 with IPv6). */
export const IPMASQ_TABLE = 'overlayd';

/** kube-proxy's masquerade mark (flannel's KubeProxyMark, 0x4000/0x4000). */
const KUBE_PROXY_MARK = '0x4000';

/** What the rules are made from. */
export interface IpMasqRules {
  /** The cluster network (net-conf Network), CIDR (IPv6 on an IPv6-only network). */
  network: string;
  /** This host's pod subnet (its lease), CIDR. */
  subnet: string;
  /** Dual stack: IPv6Network and our IPv6 subnet. */
  ipv6?: { network: string; subnet: string };
  /** `masquerade fully-random` (default) or plain `masquerade`. */
  fullyRandom: boolean;
}

/** The tables of `r`: family, network, pod subnet (ip for an IPv4 network, ip6 for an IPv6 one). */
export function masqTables(r: IpMasqRules): { family: 'ip' | 'ip6'; network: string; subnet: string }[] {
  const fam = (net: string): 'ip' | 'ip6' => (net.includes(':') ? 'ip6' : 'ip');
  const out = [{ family: fam(r.network), network: r.network, subnet: r.subnet }];
  if (r.ipv6 !== undefined && r.ipv6.network !== r.network) out.push({ family: 'ip6', network: r.ipv6.network, subnet: r.ipv6.subnet });
  return out;
}

/** The nft script that replaces our tables with the masquerade rules, atomically (one transaction). */
export function masqRuleset(r: IpMasqRules, table = IPMASQ_TABLE): string {
  const masq = r.fullyRandom ? 'masquerade fully-random' : 'masquerade';
  const out: string[] = [];
  for (const { family: f, network: net, subnet: pod } of masqTables(r)) {
    const a = f === 'ip' ? 'ip' : 'ip6';
    const mcast = f === 'ip' ? '224.0.0.0/4' : 'ff00::/8';
    out.push(
      `table ${f} ${table}`, // so that the delete below never fails
      `delete table ${f} ${table}`,
      `table ${f} ${table} {`,
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    meta mark & ${KUBE_PROXY_MARK} == ${KUBE_PROXY_MARK} return comment "kube-proxy marked it: no double NAT"`,
      `    ${a} saddr ${pod} ${a} daddr ${net} return comment "our pods to the cluster network"`,
      `    ${a} saddr ${net} ${a} daddr ${pod} return comment "the cluster network to our pods"`,
      `    ${a} saddr != ${net} ${a} daddr ${pod} return comment "outside to our pods"`,
      `    ${a} saddr ${net} ${a} daddr != ${mcast} ${masq} comment "the cluster network to outside it (not multicast)"`,
      `    ${a} saddr != ${net} ${a} daddr ${net} ${masq} comment "outside (the host) into the cluster network"`,
      '  }',
      '}',
    );
  }
  return [...out, ''].join('\n');
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
      const gone: string[] = [];
      for (const t of masqTables(this.opts)) {
        try {
          await nft(['list', 'chain', t.family, IPMASQ_TABLE, 'postrouting']);
        } catch {
          gone.push(`${t.family} ${IPMASQ_TABLE}`);
        }
      }
      if (gone.length === 0) return false;
      await nft(['-f', '-'], masqRuleset(this.opts));
      this.reapplied++;
      this.opts.log.info(`ip-masq: nftables table${gone.length > 1 ? 's' : ''} ${gone.join(' and ')} ${gone.length > 1 ? 'were' : 'was'} removed by someone else; re-applied`);
      return true;
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
    const script = masqTables(this.opts).map((t) => `table ${t.family} ${IPMASQ_TABLE}\ndelete table ${t.family} ${IPMASQ_TABLE}\n`).join('');
    await nft(['-f', '-'], script).catch((e: Error) => this.opts.log.error(`ip-masq: ${e.message}`));
  }
}
