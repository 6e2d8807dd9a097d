/**
 * A userspace VXLAN tunnel endpoint, wire-compatible with the Linux kernel's vxlan
 * device, over our own UDP socket (default VNI 1, port 8472 as flannel uses).
 *
 * L3 mode (flannel's current scheme, device flannel.<VNI>, a TUN): towards the
 * network the inner IPv4 destination goes through route -> next hop -> neighbour
 * (peer VTEP MAC) -> FDB (peer public IP); the inner Ethernet header (our VTEP MAC ->
 * neighbour MAC) and the 8-byte VXLAN header are written in the slot headroom in front
 * of the packet, and the datagram is sent. From the network: the VXLAN flags and VNI
 * are validated, frames to our VTEP MAC or broadcast are accepted, ARP requests for our
 * VTEP address are answered through the tunnel, and the IPv4 packet is written to TUN.
 *
 * L2 mode (a TAP, like a kernel vxlan bridge port): FDB lookup by destination MAC;
 * broadcast, multicast and unknown unicast are flooded to the all-zeros FDB entries
 * (head-end replication: every copy shares the same buffer); optional learning;
 * optional ARP proxy from the neighbour table; l2miss/l3miss events.
 *
 * No allocation per packet: output batches are preallocated views onto input slots.
 */
import { randomBytes } from 'node:crypto';
import type { Backend, DataplaneStats, Lease } from './backend.js';
import type { DatagramSlot, PacketDevice, PacketSlot, UdpTransport } from '../tun/types.js';
import { ipv4ToU32, u32ToIpv4 } from '../codec/addr.js';
import { Counters, D, type PeerCounters } from './counters.js';
import { IpPrefix, ipPrefix, type ParsePrefixOptions } from '../codec/addr.js';

/** Subnets in leases and options: IPv4, host bits cleared. */
const SUBNET: ParsePrefixOptions = { family: 4, hostBits: 'clear' };
import { Fdb, NeighbourTable, RouteTable4 } from '../fdb/index.js';
import { RtnlNet, type KernelNet } from './kernel.js';
import type { DataplaneIo, MissEvent, VxlanBackendOptions } from './options.js';
import { defaultIo } from './io.js';
import {
  buildArpReply, buildIcmpFragNeeded, buildIcmpNetUnreachable, formatMac, ipv4DontFragment, ipv4TotalLength, ipv4Valid,
  macHi, macLo, parseMac, emitVxlanPolicy, vxlanFlagsValid, vxlanVni, writeMacHL,
  ArpOp, ArpPacket, EtherType, ETH_HLEN, VXLAN_HLEN, VXLAN_IPV4_OVERHEAD, VXLAN_PORT_LINUX,
} from '../codec/index.js';
import { allocReplySlots, newDatagramViews, newPacketViews, type MutDatagramSlot, type MutPacketSlot } from './slots.js';

/** Outer IPv4 + UDP + VXLAN + inner Ethernet overhead. */
export const VXLAN_OVERHEAD = VXLAN_IPV4_OVERHEAD;

interface VxPeer {
  readonly lease: Lease;
  readonly subnet: IpPrefix;
  /** The peer's VTEP address: its subnet's network address (flannel's next hop). */
  readonly netAddr: number;
  /** Peer VTEP MAC (48-bit number), or undefined when the lease has none (L2 mode may learn it). */
  readonly mac: number | undefined;
  /** Public IP, uint32. */
  readonly addr: number;
  /** Public IP, int32 (map key form). */
  readonly addri: number;
}

const NO_COUNTERS: PeerCounters = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 };

/** The userspace VXLAN VTEP. See the module comment. */
export class VxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly mode: 'l3' | 'l2';
  readonly subnet: IpPrefix;
  readonly network: IpPrefix;
  readonly publicIp: number;
  readonly port: number;
  readonly vni: number;
  readonly deviceName: string;
  /** Device MTU (underlay MTU - 50 unless overridden). */
  readonly deviceMtu: number;
  /** Our VTEP MAC as a number. */
  readonly vtepMac: number;
  /** Our VTEP address: the subnet's network address (flannel puts it /32 on flannel.<VNI>). */
  readonly vtepIp: number;
  private readonly vtepIpi: number;
  private readonly macHi: number;
  private readonly macLo: number;

  private readonly opts: VxlanBackendOptions;
  private readonly io: DataplaneIo;
  private readonly kernel: KernelNet;
  private readonly counters = new Counters();
  private readonly gbp: boolean;
  private readonly gbpPolicy: number;
  private readonly learning: boolean;
  private readonly proxyArp: boolean;
  private readonly strictSource: boolean;

  // the three tables, all src/fdb's (hot-path lookups allocation-free):
  /** Route table (LPM): subnet via the peer's VTEP address, onlink. */
  private readonly routes = new RouteTable4<VxPeer>();
  /** Neighbours: peer VTEP address -> VTEP MAC (permanent entries). */
  private readonly neigh: NeighbourTable;
  /**
   * FDB: VTEP MAC -> public IP; the all-zeros entry is the flood list. Lease and setFdb()
   * entries are permanent, so learning never moves them (as in the kernel).
   */
  private readonly fdb: Fdb;
  /** Known senders (public IP int32 -> that peer's counters). */
  private known = new Map<number, PeerCounters>();
  /** Subnets owned by each sender (public IP), for the inner-source check. */
  private senderSubnets = new Map<number, IpPrefix[]>();
  private readonly bySubnet = new Map<string, VxPeer>();

  private device: PacketDevice | undefined;
  private transport: UdpTransport | undefined;
  private running = false;
  private stopping: Promise<void> | undefined;

  // preallocated batch state
  private readonly txViews: MutDatagramSlot[];
  private readonly txCounters: PeerCounters[];
  private readonly rxViews: MutPacketSlot[];
  private readonly rxCounters: PeerCounters[];
  private readonly replyViews: MutPacketSlot[];
  private readonly icmpSlots: MutPacketSlot[];

  constructor(opts: VxlanBackendOptions) {
    this.opts = opts;
    this.mode = opts.mode ?? 'l3';
    this.subnet = ipPrefix(opts.subnet, SUBNET);
    this.network = ipPrefix(opts.network, SUBNET);
    this.publicIp = ipv4ToU32(opts.publicIp);
    this.port = opts.port ?? VXLAN_PORT_LINUX;
    this.vni = opts.vni ?? 1;
    if (!Number.isInteger(this.vni) || this.vni < 0 || this.vni > 0xffffff) throw new Error(`invalid VNI ${opts.vni}`);
    this.deviceName = opts.deviceName ?? `flannel.${this.vni}`;
    this.deviceMtu = opts.deviceMtu ?? (opts.mtu ?? 1500) - VXLAN_OVERHEAD;
    this.io = opts.io ?? defaultIo;
    this.kernel = opts.kernel ?? new RtnlNet();
    this.gbp = opts.gbp ?? false;
    this.gbpPolicy = opts.gbpPolicy ?? 0;
    this.learning = opts.learning ?? false;
    this.proxyArp = opts.proxyArp ?? false;
    this.strictSource = opts.strictSource ?? true;
    if (opts.vtepMac) this.vtepMac = parseMac(opts.vtepMac);
    else {
      const r = randomBytes(6);
      r[0] = (r[0]! & 0xfe) | 0x02; // unicast, locally administered
      this.vtepMac = r.readUIntBE(0, 6);
    }
    this.vtepIp = this.subnet.net;
    this.vtepIpi = this.subnet.neti;
    this.macHi = macHi(this.vtepMac);
    this.macLo = macLo(this.vtepMac);
    this.neigh = new NeighbourTable({ proxy: true });
    this.fdb = new Fdb({ vni: this.vni, dev: this.deviceName, learning: this.learning, missOnDefault: true });
    const cb = opts.onMiss;
    if (cb) {
      const emit = (ev: MissEvent): void => {
        try { cb(ev); } catch { /* control plane errors must not break the dataplane */ }
      };
      // both tables rate-limit their events (one per key per second)
      this.fdb.on('l2miss', (vni, mac) => emit({ type: 'l2miss', vni, mac: formatMac(mac) }));
      this.neigh.on('l3miss', (ip) => emit({ type: 'l3miss', vni: this.vni, ip: u32ToIpv4(ip) }));
    }
    const n = Math.max(1, opts.batchSize ?? 64);
    this.txViews = newDatagramViews(n);
    this.txCounters = new Array<PeerCounters>(n).fill(NO_COUNTERS);
    this.rxViews = newPacketViews(n);
    this.rxCounters = new Array<PeerCounters>(n).fill(NO_COUNTERS);
    this.replyViews = newPacketViews(n);
    this.icmpSlots = allocReplySlots(n);
  }

  /** Create the device and socket, configure the kernel side, start forwarding. */
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
      dev = await (this.mode === 'l2' ? this.io.openTap(this.deviceName) : this.io.openTun(this.deviceName));
    } catch (e) {
      tr.close();
      throw e;
    }
    this.device = dev;
    this.transport = tr;
    if (this.opts.configureKernel !== false) {
      try {
        await this.kernel.configureDevice(dev.name, {
          mtu: this.deviceMtu,
          cidr: `${u32ToIpv4(this.vtepIp)}/32`,
          mac: this.mode === 'l2' ? formatMac(this.vtepMac) : undefined,
        });
        if (this.mode === 'l3') await this.kernel.deviceSysctl(dev.name, 'accept_local', '1');
        for (const p of this.bySubnet.values()) await this.kernel.replaceRoute(p.lease.subnet, u32ToIpv4(p.netAddr), dev.name);
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
    dev.onBatch(this.mode === 'l2' ? this.onTapBatch : this.onTunBatch);
    tr.onBatch(this.onSocketBatch);
  }

  /** This host's lease (with our VNI and VTEP MAC). */
  localLease(): Lease {
    return {
      subnet: `${u32ToIpv4(this.subnet.net)}/${this.subnet.len}`,
      publicIp: u32ToIpv4(this.publicIp),
      backendType: 'vxlan',
      vni: this.vni,
      vtepMac: formatMac(this.vtepMac),
    };
  }

  /**
   * Add or replace a peer: L3 mode installs 1 route (subnet via its network address),
   * 1 neighbour (network address -> VTEP MAC) and 1 FDB entry (MAC -> public IP), plus
   * the kernel route `subnet via X dev flannel.N onlink`. L2 mode adds the peer's public IP
   * to the all-zeros flood list and, when the lease has a MAC, the FDB and neighbour entries.
   */
  addPeer(lease: Lease): void {
    const subnet = ipPrefix(lease.subnet, SUBNET);
    if (subnet.net === this.subnet.net && subnet.len === this.subnet.len) return;
    const key = `${u32ToIpv4(subnet.net)}/${subnet.len}`;
    const mac = lease.vtepMac ? parseMac(lease.vtepMac) : undefined;
    if (this.mode === 'l3' && mac === undefined) throw new Error(`lease ${key} has no vtepMac (required in L3 mode)`);
    const addr = ipv4ToU32(lease.publicIp);
    const peer: VxPeer = { lease: { ...lease, subnet: key }, subnet, netAddr: subnet.net, mac, addr, addri: addr | 0 };
    const old = this.bySubnet.get(key);
    if (old) this.unlinkTables(old);
    this.bySubnet.set(key, peer);
    this.linkTables(peer);
    this.rebuildKnown();
    if (this.running && this.opts.configureKernel !== false) this.kernel.replaceRoute(key, u32ToIpv4(peer.netAddr), this.device!.name).catch(() => undefined); // errors kept in kernel.errors
  }

  /** Remove the peer owning `subnet` (tables and kernel route). */
  removePeer(subnet: string): void {
    const p = ipPrefix(subnet, SUBNET);
    const key = `${u32ToIpv4(p.net)}/${p.len}`;
    const old = this.bySubnet.get(key);
    if (!old) return;
    this.bySubnet.delete(key);
    this.unlinkTables(old);
    this.rebuildKnown();
    if (this.running && this.opts.configureKernel !== false) this.kernel.deleteRoute(key, this.device!.name).catch(() => undefined);
  }

  private linkTables(p: VxPeer): void {
    if (this.mode === 'l3') this.routes.replace({ dst: { prefix: p.subnet.net, prefixLen: p.subnet.len }, via: p.netAddr, onlink: true, dev: this.deviceName, peer: p });
    if (p.mac !== undefined) {
      this.neigh.replace({ ip: p.netAddr, lladdr: p.mac, dev: this.deviceName });
      this.fdb.replace({ mac: p.mac, dst: p.addr });
    }
    if (this.mode === 'l2' && !this.floodList().includes(p.addr)) this.fdb.append({ mac: 0, dst: p.addr });
  }

  private unlinkTables(p: VxPeer): void {
    if (this.mode === 'l3' && this.routes.getExact(p.subnet.net, p.subnet.len)?.peer === p) this.routes.deleteExact(p.subnet.net, p.subnet.len);
    if (p.mac !== undefined) {
      if (this.neigh.get(p.netAddr)?.mac === p.mac) this.neigh.delete(p.netAddr);
      this.fdb.delete(this.vni, p.mac);
    }
    if (this.mode === 'l2') {
      let stillUsed = false;
      for (const o of this.bySubnet.values()) if (o !== p && o.addr === p.addr) stillUsed = true;
      if (!stillUsed) this.fdb.delete(this.vni, 0, p.addr);
    }
  }

  /** Public IPs (uint32) of the all-zeros (flood) entry. */
  private floodList(): number[] {
    return this.fdb.get(this.vni, 0)?.dests.map((d) => d.ip) ?? [];
  }

  /** Add/replace an FDB entry (`mac` "00:00:00:00:00:00" = the flood list) for a control plane. */
  setFdb(mac: string, publicIps: string[]): void {
    const m = parseMac(mac);
    const dsts = publicIps.map((ip) => ipv4ToU32(ip));
    this.fdb.delete(this.vni, m);
    for (const d of dsts) this.fdb.append({ mac: m, dst: d });
    this.rebuildKnown();
  }

  /** Add/replace (or with `mac` undefined, delete) a neighbour entry for a control plane. */
  setNeighbour(ip: string, mac: string | undefined): void {
    if (mac === undefined) this.neigh.delete(ip);
    else this.neigh.replace({ ip, lladdr: mac, dev: this.deviceName });
  }

  /** The FDB as a plain object (mac -> public IPs; all-zeros = flood list). */
  fdbEntries(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const e of this.fdb.list()) if (e.dests.length > 0) out[formatMac(e.mac)] = e.dests.map((d) => u32ToIpv4(d.ip));
    return out;
  }

  /** Peers currently configured. */
  peers(): Lease[] {
    return [...this.bySubnet.values()].map((p) => ({ ...p.lease }));
  }

  private rebuildKnown(): void {
    const k = new Map<number, PeerCounters>();
    const add = (a: number): void => { if (!k.has(a | 0)) k.set(a | 0, this.counters.peer(a >>> 0)); };
    for (const p of this.bySubnet.values()) add(p.addr);
    for (const e of this.fdb.list()) for (const d of e.dests) add(d.ip);
    this.known = k;
    const ss = new Map<number, IpPrefix[]>();
    for (const p of this.bySubnet.values()) ss.set(p.addri, [...(ss.get(p.addri) ?? []), p.subnet]);
    this.senderSubnets = ss;
  }

  /** Counters as a plain object, plus ARP replies, ICMP errors and flood counts. */
  stats(): DataplaneStats & { arpReplies: number; icmpSent: number; floods: number; floodCopies: number } {
    const c = this.counters;
    return { ...c.snapshot(), arpReplies: c.arpReplies, icmpSent: c.icmpSent, floods: c.floods, floodCopies: c.floodCopies };
  }

  /** Stop forwarding, close device and socket (the kernel drops the device's address and routes with it). */
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

  /** Queue one datagram view to `addr` (int32 form); flushes when the batch is full. Returns the new count. */
  private pushTx(n: number, buf: Buffer, off: number, len: number, addr: number): number {
    if (n === this.txViews.length) {
      this.flushTx(n);
      n = 0;
    }
    const v = this.txViews[n]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    v.family = 4;
    v.addr = addr >>> 0;
    v.port = this.port;
    this.txCounters[n] = this.known.get(addr) ?? NO_COUNTERS;
    return n + 1;
  }

  private flushTx(n: number): void {
    const c = this.counters;
    const sent = this.transport!.sendBatch(this.txViews, n);
    for (let j = 0; j < n; j++) {
      const pc = this.txCounters[j]!;
      this.txCounters[j] = NO_COUNTERS;
      if (j < sent) {
        const len = this.txViews[j]!.len;
        c.txPackets++;
        c.txBytes += len;
        pc.txPackets++;
        pc.txBytes += len;
      } else c.drop(D.tx_socket_full);
    }
  }

  /** L3: TUN -> network. */
  private readonly onTunBatch = (slots: PacketSlot[], count: number): void => {
    if (!this.running) return;
    const c = this.counters;
    const hdr = VXLAN_HLEN + ETH_HLEN;
    let n = 0;
    let nIcmp = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      const b = s.buf;
      const off = s.off;
      const len = s.len;
      if (len < 20) { c.drop(D.tx_runt); continue; }
      if (b[off]! >> 4 !== 4) { c.drop(D.tx_not_ipv4); continue; }
      const r = this.routes.lookup(b.readInt32BE(off + 16));
      if (r === undefined) {
        c.drop(D.tx_no_route);
        if (nIcmp < this.icmpSlots.length) {
          const o = this.icmpSlots[nIcmp]!;
          o.len = buildIcmpNetUnreachable(o.buf, o.off, b, off, len, this.vtepIp);
          if (o.len > 0) nIcmp++;
        }
        continue;
      }
      if (len > this.deviceMtu && ipv4DontFragment(b, off)) {
        c.drop(D.tx_too_big);
        if (nIcmp < this.icmpSlots.length) {
          const o = this.icmpSlots[nIcmp]!;
          o.len = buildIcmpFragNeeded(o.buf, o.off, b, off, len, this.vtepIp, this.deviceMtu);
          if (o.len > 0) nIcmp++;
        }
        continue;
      }
      if (off < hdr) { c.drop(D.tx_runt); continue; }
      const e = off - ETH_HLEN;
      // neighbour: the peer VTEP MAC goes straight into the inner Ethernet destination
      if (!this.neigh.lookupMacInto(r.gateway | 0, b, e)) { c.drop(D.tx_no_neighbour); continue; }
      const ent = this.fdb.lookupBytes(this.vni, b, e);
      if (ent === undefined || ent.dests.length === 0) { c.drop(D.tx_no_fdb); continue; }
      writeMacHL(b, e + 6, this.macHi, this.macLo);
      b[e + 12] = EtherType.IPv4 >>> 8;
      b[e + 13] = EtherType.IPv4 & 0xff;
      emitVxlanPolicy(b, off - hdr, this.vni, this.gbp, this.gbpPolicy);
      const ds = ent.dests;
      for (let k = 0; k < ds.length; k++) n = this.pushTx(n, b, off - hdr, len + hdr, ds[k]!.ip | 0);
    }
    if (n > 0) this.flushTx(n);
    if (nIcmp > 0) c.icmpSent += this.device!.writeBatch(this.icmpSlots, nIcmp);
  };

  /** L2: TAP -> network (bridge-port semantics). */
  private readonly onTapBatch = (slots: PacketSlot[], count: number): void => {
    if (!this.running) return;
    const c = this.counters;
    let n = 0;
    let nReply = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      const b = s.buf;
      const off = s.off;
      const len = s.len;
      if (len < ETH_HLEN) { c.drop(D.tx_runt); continue; }
      if (this.proxyArp && b.readUInt16BE(off + 12) === EtherType.ARP && this.arpRequest(b, off, len)) {
        const target = this.arp.tpa;
        {
          const ent = this.neigh.proxyLookup(target);
          if (ent === undefined) { c.drop(D.tx_l3miss); continue; }
          const v = this.replyViews[nReply++]!;
          v.buf = b;
          v.off = off;
          v.len = buildArpReply(b, off, this.arp, ent.mac);
          c.arpReplies++;
          if (nReply === this.replyViews.length) { this.device!.writeBatch(this.replyViews, nReply); nReply = 0; }
          continue;
        }
      }
      if (off < VXLAN_HLEN) { c.drop(D.tx_runt); continue; }
      // exact entry, else the all-zeros flood entry (broadcast, multicast, unknown unicast)
      const ent = this.fdb.lookupBytes(this.vni, b, off);
      if (ent === undefined || ent.dests.length === 0) { c.drop(D.tx_l2miss); continue; }
      const ds = ent.dests;
      if (ent.mac === 0) {
        c.floods++;
        c.floodCopies += ds.length;
      }
      emitVxlanPolicy(b, off - VXLAN_HLEN, this.vni, this.gbp, this.gbpPolicy);
      for (let k = 0; k < ds.length; k++) n = this.pushTx(n, b, off - VXLAN_HLEN, len + VXLAN_HLEN, ds[k]!.ip | 0);
    }
    if (n > 0) this.flushTx(n);
    if (nReply > 0) this.device!.writeBatch(this.replyViews, nReply);
  };

  /** Network -> device (both modes). */
  private readonly onSocketBatch = (slots: DatagramSlot[], count: number): void => {
    if (!this.running) return;
    const c = this.counters;
    const l2 = this.mode === 'l2';
    let n = 0;
    let nArp = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      if (s.family !== 4) { c.drop(D.rx_ipv6_underlay); continue; }
      const from = s.addr | 0;
      const pc = this.known.get(from);
      if (pc === undefined) { c.drop(D.rx_unknown_peer); continue; }
      const b = s.buf;
      const off = s.off;
      const len = s.len;
      if (len < VXLAN_HLEN + ETH_HLEN) { c.drop(D.rx_truncated); continue; }
      if (!vxlanFlagsValid(b, off, this.gbp)) { c.drop(D.rx_bad_vxlan_flags); continue; }
      if (vxlanVni(b, off) !== this.vni) { c.drop(D.rx_wrong_vni); continue; }
      const e = off + VXLAN_HLEN;
      const elen = len - VXLAN_HLEN;
      if (l2) {
        // learning (kernel vxlan_snoop): never our own MAC; permanent entries are never moved
        if (this.learning && !(b.readUInt16BE(e + 6) === this.macHi && b.readInt32BE(e + 8) === this.macLo)) {
          this.fdb.learnBytes(this.vni, b, e + 6, from, this.port);
        }
        n = this.pushRx(n, b, e, elen, pc);
        continue;
      }
      const dh = b.readUInt16BE(e);
      const dl = b.readInt32BE(e + 2);
      if (!(dh === this.macHi && dl === this.macLo) && !(dh === 0xffff && dl === -1)) { c.drop(D.rx_not_our_mac); continue; }
      const et = b.readUInt16BE(e + 12);
      if (et === EtherType.IPv4) {
        const ip = e + ETH_HLEN;
        const ilen = elen - ETH_HLEN;
        if (!ipv4Valid(b, ip, ilen)) { c.drop(D.rx_bad_ipv4); continue; }
        if (!this.subnet.containsV4(b.readInt32BE(ip + 16))) { c.drop(D.rx_not_our_subnet); continue; }
        if (this.strictSource && !this.sourceOk(b.readInt32BE(ip + 12), from)) { c.drop(D.rx_spoofed_inner_source); continue; }
        n = this.pushRx(n, b, ip, ipv4TotalLength(b, ip), pc);
      } else if (et === EtherType.ARP) {
        if (!this.arpRequest(b, e, elen) || (this.arp.tpa | 0) !== this.vtepIpi) { c.drop(D.rx_arp_not_for_us); continue; }
        const rl = buildArpReply(b, e, this.arp, this.vtepMac);
        emitVxlanPolicy(b, off, this.vni, this.gbp, this.gbpPolicy);
        // replies go out after the received batch; ARP is rare, so they share the tx views
        const v = this.arpOut[nArp] ?? this.arpOut[this.arpOut.length - 1]!;
        v.buf = b;
        v.off = off;
        v.len = VXLAN_HLEN + rl;
        v.family = 4;
        v.addr = s.addr;
        v.port = this.port;
        if (nArp < this.arpOut.length) nArp++;
        c.arpReplies++;
      } else c.drop(D.rx_unsupported_ethertype);
    }
    if (n > 0) this.flushRx(n);
    if (nArp > 0) this.transport!.sendBatch(this.arpOut, nArp);
  };

  private readonly arpOut: MutDatagramSlot[] = newDatagramViews(8);
  /** ARP view, reused (the ARP paths are not hot, but allocate nothing either). */
  private readonly arp = new ArpPacket();

  /** True when the Ethernet frame `buf[off..off+len)` (ethertype ARP) carries an Ethernet/IPv4 ARP request; targets `this.arp` at it. */
  private arpRequest(buf: Buffer, off: number, len: number): boolean {
    return this.arp.check(buf, off + ETH_HLEN, len - ETH_HLEN) === 'ok' && this.arp.op === ArpOp.REQUEST;
  }

  /** Inner source (int32) must be inside a subnet owned by the sender (int32 public IP). */
  private sourceOk(src: number, sender: number): boolean {
    const subnets = this.senderSubnets.get(sender);
    if (subnets === undefined) return false;
    for (let i = 0; i < subnets.length; i++) if (subnets[i]!.containsV4(src)) return true;
    return false;
  }

  private pushRx(n: number, buf: Buffer, off: number, len: number, pc: PeerCounters): number {
    if (n === this.rxViews.length) {
      this.flushRx(n);
      n = 0;
    }
    const v = this.rxViews[n]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    this.rxCounters[n] = pc;
    return n + 1;
  }

  private flushRx(n: number): void {
    const c = this.counters;
    const w = this.device!.writeBatch(this.rxViews, n);
    for (let j = 0; j < n; j++) {
      const pc = this.rxCounters[j]!;
      this.rxCounters[j] = NO_COUNTERS;
      if (j < w) {
        const len = this.rxViews[j]!.len;
        c.rxPackets++;
        c.rxBytes += len;
        pc.rxPackets++;
        pc.rxBytes += len;
      } else c.drop(D.rx_device_full);
    }
  }
}
