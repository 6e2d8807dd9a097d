/**
 * The flannel0-style UDP backend: a TUN device and a UDP socket; the datagram
 * payload is the bare IPv4 packet (flannel's wire format, default port 8285).
 *
 * Towards the network: LPM on the inner destination -> peer; TTL decremented with the
 * incremental checksum; ICMP net unreachable / time exceeded / fragmentation needed
 * written back into the TUN. From the network: accepted only from known peers,
 * validated as IPv4, inner source inside the peer's subnet, destination inside ours.
 *
 * Batches end to end, zero-copy: output slots are preallocated views that point at
 * the input slots' buffers; nothing is allocated per packet.
 */
import type { Backend, DataplaneStats, Lease } from './backend.js';
import type { DatagramSlot, PacketDevice, PacketSlot, UdpTransport } from '../tun/types.js';
import { ipv4ToU32, u32ToIpv4 } from '../codec/addr.js';
import { FLANNEL_UDP_PORT } from '../codec/index.js';
import { Counters, D, type PeerCounters } from './counters.js';
import { IpPrefix, ipPrefix, type ParsePrefixOptions } from '../codec/addr.js';

/** Subnets in leases and options: IPv4, host bits cleared. */
const SUBNET: ParsePrefixOptions = { family: 4, hostBits: 'clear' };
import { RouteTable4 } from '../fdb/index.js';
import { RtnlNet, type KernelNet } from './kernel.js';
import type { DataplaneIo, UdpBackendOptions } from './options.js';
import { defaultIo } from './io.js';
import {
  buildIcmpFragNeeded, buildIcmpNetUnreachable, buildIcmpTimeExceeded, ipv4DecrementTtl, ipv4DontFragment,
  ipv4TotalLength, ipv4Valid, IPV4_HLEN, UDP_HLEN,
} from '../codec/index.js';
import { newDatagramViews, newPacketViews, allocReplySlots, type MutDatagramSlot, type MutPacketSlot } from './slots.js';

/** IPv4 + UDP header overhead of the UDP backend. */
export const UDP_OVERHEAD = IPV4_HLEN + UDP_HLEN;

interface UdpPeer {
  readonly lease: Lease;
  readonly subnet: IpPrefix;
  readonly addr: number;
  readonly counters: PeerCounters;
}

/** The flannel0-style UDP backend. See the module comment. */
export class UdpBackend implements Backend {
  readonly type = 'udp' as const;
  /** Effective options. */
  readonly subnet: IpPrefix;
  readonly network: IpPrefix;
  readonly publicIp: number;
  readonly port: number;
  readonly deviceName: string;
  /** Device MTU (underlay MTU - 28 unless overridden). */
  readonly deviceMtu: number;

  private readonly opts: UdpBackendOptions;
  private readonly io: DataplaneIo;
  private readonly kernel: KernelNet;
  private readonly counters = new Counters();
  /** Routes to peer subnets (src/fdb's LPM table); each route's `peer` slot holds the peer. */
  private readonly routes = new RouteTable4<UdpPeer>();
  private readonly bySubnet = new Map<string, UdpPeer>();
  /** Peers by public IP in int32 form (small-integer keys: lookups never box). */
  private readonly byAddr = new Map<number, UdpPeer>();
  private readonly strictSource: boolean;
  /** Source of ICMP errors we generate: our TUN address. */
  private readonly icmpSrc: number;

  private device: PacketDevice | undefined;
  private transport: UdpTransport | undefined;
  private running = false;
  private stopping: Promise<void> | undefined;

  // preallocated batch state
  private readonly batch: number;
  private readonly txViews: MutDatagramSlot[];
  private readonly txPeers: (UdpPeer | undefined)[];
  private readonly rxViews: MutPacketSlot[];
  private readonly rxPeers: (UdpPeer | undefined)[];
  private readonly icmpSlots: MutPacketSlot[];

  constructor(opts: UdpBackendOptions) {
    this.opts = opts;
    this.subnet = ipPrefix(opts.subnet, SUBNET);
    this.network = ipPrefix(opts.network, SUBNET);
    this.publicIp = ipv4ToU32(opts.publicIp);
    this.port = opts.port ?? FLANNEL_UDP_PORT;
    this.deviceName = opts.deviceName ?? 'flannel0';
    this.deviceMtu = opts.deviceMtu ?? (opts.mtu ?? 1500) - UDP_OVERHEAD;
    this.io = opts.io ?? defaultIo;
    this.kernel = opts.kernel ?? new RtnlNet();
    this.strictSource = opts.strictSource ?? true;
    this.icmpSrc = this.subnet.net;
    this.batch = Math.max(1, opts.batchSize ?? 64);
    // Output views: a longer input batch is sent in chunks of `batch`.
    this.txViews = newDatagramViews(this.batch);
    this.txPeers = new Array<UdpPeer | undefined>(this.batch).fill(undefined);
    this.rxViews = newPacketViews(this.batch);
    this.rxPeers = new Array<UdpPeer | undefined>(this.batch).fill(undefined);
    this.icmpSlots = allocReplySlots(this.batch);
  }

  /** Create the TUN and socket, configure the kernel side, start forwarding. */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.doStart().finally(() => { this.starting = undefined; });
    }
    return this.starting;
  }

  private starting: Promise<void> | undefined;

  private async doStart(): Promise<void> {
    if (this.running) return;
    if (this.stopping) await this.stopping;
    const tr = this.io.createTransport(this.opts.transport ?? 'dgram');
    try {
      await tr.bind(this.port, this.opts.bindAddress);
    } catch (e) {
      tr.close();
      throw e;
    }
    let dev: PacketDevice;
    try {
      dev = await this.io.openTun(this.deviceName);
    } catch (e) {
      tr.close();
      throw e;
    }
    this.transport = tr;
    this.device = dev;
    if (this.opts.configureKernel !== false) {
      try {
        // flannel: <subnet address>/<network prefix> on flannel0; the connected route sends the whole network here.
        await this.kernel.configureDevice(dev.name, { mtu: this.deviceMtu, cidr: `${u32ToIpv4(this.subnet.net)}/${this.network.len}` });
        await this.kernel.deviceSysctl(dev.name, 'accept_local', '1'); // our ICMP errors carry our own TUN address as source
      } catch (e) {
        dev.close();
        tr.close();
        this.device = undefined;
        this.transport = undefined;
        throw e;
      }
    }
    this.stopping = undefined; // a later stop() closes this device and socket
    this.running = true;
    dev.onBatch(this.onDeviceBatch);
    tr.onBatch(this.onSocketBatch);
  }

  /** This host's lease. */
  localLease(): Lease {
    return { subnet: `${u32ToIpv4(this.subnet.net)}/${this.subnet.len}`, publicIp: u32ToIpv4(this.publicIp), backendType: 'udp' };
  }

  /** Add or replace a peer (keyed by its subnet). */
  addPeer(lease: Lease): void {
    const subnet = ipPrefix(lease.subnet, SUBNET);
    const key = `${u32ToIpv4(subnet.net)}/${subnet.len}`;
    const addr = ipv4ToU32(lease.publicIp);
    if (subnet.net === this.subnet.net && subnet.len === this.subnet.len) return; // our own lease
    const old = this.bySubnet.get(key);
    if (old) this.unlink(old, key);
    const peer: UdpPeer = { lease: { ...lease }, subnet, addr, counters: this.counters.peer(addr) };
    this.bySubnet.set(key, peer);
    this.routes.replace({ dst: { prefix: subnet.net, prefixLen: subnet.len }, dev: this.deviceName, peer });
    this.byAddr.set(addr | 0, peer);
  }

  /** Remove the peer owning `subnet`. */
  removePeer(subnet: string): void {
    const p = ipPrefix(subnet, SUBNET);
    const key = `${u32ToIpv4(p.net)}/${p.len}`;
    const old = this.bySubnet.get(key);
    if (old) this.unlink(old, key);
  }

  private unlink(peer: UdpPeer, key: string): void {
    this.bySubnet.delete(key);
    if (this.routes.getExact(peer.subnet.net, peer.subnet.len)?.peer === peer) this.routes.deleteExact(peer.subnet.net, peer.subnet.len);
    if (this.byAddr.get(peer.addr | 0) === peer) {
      this.byAddr.delete(peer.addr | 0);
      // another lease on the same public IP keeps it a known source
      for (const other of this.bySubnet.values()) if (other.addr === peer.addr) { this.byAddr.set(other.addr | 0, other); break; }
    }
  }

  /** Peers currently configured. */
  peers(): Lease[] {
    return [...this.bySubnet.values()].map((p) => ({ ...p.lease }));
  }

  /** Counters as a plain object, plus the number of ICMP errors written back into the TUN. */
  stats(): DataplaneStats & { icmpSent: number } {
    return { ...this.counters.snapshot(), icmpSent: this.counters.icmpSent };
  }

  /** Stop forwarding, close device and socket. The kernel drops the TUN's address and routes with it. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.running = false;
        this.device?.close();
        this.transport?.close();
        this.device = undefined;
        this.transport = undefined;
        await this.kernel.flush().catch(() => undefined);
      })();
    }
    return this.stopping;
  }

  /** TUN -> network. */
  private readonly onDeviceBatch = (slots: PacketSlot[], count: number): void => {
    if (!this.running) return;
    const c = this.counters;
    const mtu = this.deviceMtu;
    const port = this.port;
    let n = 0;
    let nIcmp = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      const b = s.buf;
      const off = s.off;
      let len = s.len;
      if (len < 20) { c.drop(D.tx_runt); continue; }
      if (!ipv4Valid(b, off, len)) { c.drop(D.tx_not_ipv4); continue; }
      len = ipv4TotalLength(b, off);
      const route = this.routes.lookup(b.readInt32BE(off + 16));
      const peer = route === undefined ? undefined : route.peer;
      if (peer === undefined) {
        c.drop(D.tx_no_route);
        if (nIcmp < this.icmpSlots.length) {
          const r = this.icmpSlots[nIcmp]!;
          r.len = buildIcmpNetUnreachable(r.buf, r.off, b, off, len, this.icmpSrc);
          if (r.len > 0) nIcmp++;
        }
        continue;
      }
      if (b[off + 8]! <= 1) {
        c.drop(D.tx_ttl_exceeded);
        if (nIcmp < this.icmpSlots.length) {
          const r = this.icmpSlots[nIcmp]!;
          r.len = buildIcmpTimeExceeded(r.buf, r.off, b, off, len, this.icmpSrc);
          if (r.len > 0) nIcmp++;
        }
        continue;
      }
      if (len > mtu && ipv4DontFragment(b, off)) {
        c.drop(D.tx_too_big);
        if (nIcmp < this.icmpSlots.length) {
          const r = this.icmpSlots[nIcmp]!;
          r.len = buildIcmpFragNeeded(r.buf, r.off, b, off, len, this.icmpSrc, mtu);
          if (r.len > 0) nIcmp++;
        }
        continue;
      }
      ipv4DecrementTtl(b, off);
      if (n === this.txViews.length) this.flushTx(n), (n = 0);
      const v = this.txViews[n]!;
      v.buf = b;
      v.off = off;
      v.len = len;
      v.family = 4;
      v.addr = peer.addr;
      v.port = port;
      this.txPeers[n++] = peer;
    }
    if (n > 0) this.flushTx(n);
    if (nIcmp > 0) {
      const w = this.device!.writeBatch(this.icmpSlots, nIcmp);
      c.icmpSent += w;
    }
  };

  private flushTx(n: number): void {
    const c = this.counters;
    const sent = this.transport!.sendBatch(this.txViews, n);
    for (let j = 0; j < n; j++) {
      const peer = this.txPeers[j]!;
      this.txPeers[j] = undefined;
      if (j < sent) {
        const len = this.txViews[j]!.len;
        c.txPackets++;
        c.txBytes += len;
        peer.counters.txPackets++;
        peer.counters.txBytes += len;
      } else {
        c.drop(D.tx_socket_full);
      }
    }
  }

  /** Network -> TUN. */
  private readonly onSocketBatch = (slots: DatagramSlot[], count: number): void => {
    if (!this.running) return;
    const c = this.counters;
    const subnet = this.subnet;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      if (s.family !== 4) { c.drop(D.rx_ipv6_underlay); continue; }
      const peer = this.byAddr.get(s.addr | 0);
      if (peer === undefined) { c.drop(D.rx_unknown_peer); continue; }
      const b = s.buf;
      const off = s.off;
      if (s.len < 20) { c.drop(D.rx_truncated); continue; }
      if (!ipv4Valid(b, off, s.len)) { c.drop(D.rx_bad_ipv4); continue; }
      if (!subnet.containsV4(b.readInt32BE(off + 16))) { c.drop(D.rx_not_our_subnet); continue; }
      if (this.strictSource && !this.sourceOk(b.readInt32BE(off + 12), peer)) { c.drop(D.rx_spoofed_inner_source); continue; }
      if (n === this.rxViews.length) this.flushRx(n), (n = 0);
      const v = this.rxViews[n]!;
      v.buf = b;
      v.off = off;
      v.len = ipv4TotalLength(b, off);
      this.rxPeers[n++] = peer;
    }
    if (n > 0) this.flushRx(n);
  };

  /** Inner source must belong to the sending peer (any of its leases). */
  private sourceOk(src: number, peer: UdpPeer): boolean {
    if (peer.subnet.containsV4(src)) return true;
    const owner = this.routes.lookup(src);
    return owner !== undefined && owner.peer !== undefined && owner.peer.addr === peer.addr;
  }

  private flushRx(n: number): void {
    const c = this.counters;
    const w = this.device!.writeBatch(this.rxViews, n);
    for (let j = 0; j < n; j++) {
      const peer = this.rxPeers[j]!;
      this.rxPeers[j] = undefined;
      if (j < w) {
        const len = this.rxViews[j]!.len;
        c.rxPackets++;
        c.rxBytes += len;
        peer.counters.rxPackets++;
        peer.counters.rxBytes += len;
      } else {
        c.drop(D.rx_device_full);
      }
    }
  }
}
