/**
 * TUN and TAP devices read and written in batches from the Node event loop.
 *
 * Receive: the addon waits for readability with uv_poll, reads up to `batch` packets
 * (until EAGAIN) straight into the device's slots at HEADROOM and calls back once per
 * batch; this wrapper copies the lengths from the shared descriptor array into the slot
 * objects (no allocation per packet). Write: one native call writes a whole batch.
 */
import { HEADROOM, SLOT_SIZE, OFFLOAD_SLOT_SIZE, allocSlots, type BatchHandler, type BatchStamps, type DeviceOffloads, type PacketDevice, type PacketSlot, type ReadErrorListener } from './types.js';
import {
  native, type NativeBatchIo, DESC_STRIDE, D_LEN, D_OFF,
  TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6,
} from './native.js';
import { Rtnl, type AddressInfo, type LinkInfo } from './rtnl.js';
import { OsError, errnoName, wrapOsError } from './errors.js';

/** Size of `struct virtio_net_hdr` prepended to every packet when `vnetHdr` is set. */
export const VNET_HDR_LEN = 10;

const NO_OFFLOADS: DeviceOffloads = Object.freeze({ csum: false, tso4: false, tso6: false, uso4: false, uso6: false });

/** Smallest slot for an offload device: headroom + a 64 KB super-packet. */
const MIN_OFFLOAD_SLOT = HEADROOM + 65535;

/** Options to create a TUN or TAP device. */
export interface DeviceOptions {
  /** Interface name (≤ 15 bytes); empty/omitted: kernel picks tunN / tapN. */
  name?: string;
  /** MTU to set after creation. */
  mtu?: number;
  /** Open with IFF_MULTI_QUEUE (more queues: `openQueue()`). */
  multiQueue?: boolean;
  /**
   * Open with IFF_VNET_HDR. The 10-byte virtio_net_hdr is kept out of the slots:
   * received headers are discarded and zero headers are written (no offloads enabled).
   */
  vnetHdr?: boolean;
  /**
   * Kernel offloads (as wireguard-go): IFF_VNET_HDR, TUNSETVNETHDRSZ 10, and TUNSETOFFLOAD with
   * CSUM|TSO4|TSO6 plus USO4|USO6 when the kernel accepts them (see `offloads`). The 10-byte
   * virtio_net_hdr is then part of the slot, in front of the packet: a read puts it at
   * `buf[off - 10, off)` and the packet (possibly a super-packet up to 64 KB) at `buf[off, off + len)`;
   * a write sends `buf[off - 10, off + len)`, so the caller writes the header there first (zeroes:
   * a plain packet with a complete checksum). Slots default to OFFLOAD_SLOT_SIZE.
   */
  offload?: boolean;
  /** TUNSETPERSIST: keep the device after close (default false). */
  persist?: boolean;
  /** Max packets read per wake-up = number of receive slots (default 64). */
  batch?: number;
  /** Receive slot size in bytes (default SLOT_SIZE). */
  slotSize?: number;
  /** Bring the link up after creation. */
  up?: boolean;
  /** Addresses (CIDR) to add after creation. */
  addresses?: string[];
  /**
   * IPv6 on the device (default: only when an IPv6 address is among `addresses`). Without it, a
   * device brought up here gets IPv6 turned off first (`Rtnl.setIpv6`): no link-local address, no
   * router solicitations or MLD reports of its own to read back as packets. `addAddress` of an
   * IPv6 address turns it back on.
   */
  ipv6?: boolean;
  /** MAC to set (TAP only). */
  mac?: string;
  /**
   * Adopt this already open TUN/TAP queue (inherited from, or handed over by, another process)
   * instead of opening one: name, IFF_VNET_HDR and IFF_MULTI_QUEUE are read from it; `name`,
   * `multiQueue`, `vnetHdr` and `persist` are ignored. `offload` applies when the queue was opened
   * with IFF_VNET_HDR. Closing the device closes only this process's descriptor.
   */
  fd?: number;
}

/** A received batch, as yielded by async iteration: `slots[0..count)` are valid until the next iteration. */
export interface PacketBatch {
  slots: PacketSlot[];
  count: number;
}

const openDevices = new Set<BaseDevice>();
let exitHook = false;
function track(d: BaseDevice): void {
  openDevices.add(d);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => { for (const x of [...openDevices]) x.close(); });
  }
}

/** Common part of TunDevice and TapDevice. */
abstract class BaseDevice implements PacketDevice, AsyncIterable<PacketBatch> {
  /** Kernel interface name. */
  readonly name: string;
  /** Kernel ifindex. */
  readonly ifindex: number;
  /** Receive slots (reused for every batch). */
  readonly slots: PacketSlot[];
  /** Whether IFF_VNET_HDR is in use. */
  readonly vnetHdr: boolean;
  /** Whether IFF_MULTI_QUEUE is in use. */
  readonly multiQueue: boolean;
  /** Whether the offload layout is in use (virtio_net_hdr in the slot at [off - 10, off)). */
  readonly offload: boolean;
  /** Offloads the kernel accepted (all false without `offload`). */
  readonly offloads: DeviceOffloads;
  private readonly errCounts: Record<string, number> = {};
  private errTotal = 0;
  private errListeners: ReadErrorListener[] = [];
  protected readonly io: NativeBatchIo;
  private readonly fd: number;
  private readonly rxDesc: Uint32Array;
  private txBufs: Buffer[] = [];
  private txDesc: Uint32Array;
  private handler: BatchHandler<PacketSlot> | null = null;
  private waiter: ((n: number) => void) | null = null;
  private closedFlag = false;
  /** pause() was called and resume() not since: onBatch installs its handler without reading. */
  private held = false;
  private cachedMtu: number;
  /** IPv6 was turned off on the link by configure(). */
  private ipv6Off = false;
  protected readonly opts: DeviceOptions;
  protected readonly tap: boolean;

  protected constructor(tap: boolean, opts: DeviceOptions) {
    const n = native();
    let offload = !!opts.offload;
    const slotSize = opts.slotSize ?? (offload ? OFFLOAD_SLOT_SIZE : SLOT_SIZE);
    if (offload && slotSize < MIN_OFFLOAD_SLOT) throw new RangeError(`offload devices need slotSize >= ${MIN_OFFLOAD_SLOT}`);
    let r: { fd: number; name: string; ifindex: number };
    let vnetHdr = !!opts.vnetHdr || offload;
    let multiQueue = !!opts.multiQueue;
    if (opts.fd !== undefined) {
      let a: { name: string; ifindex: number; tap: boolean; vnetHdr: boolean; multiQueue: boolean };
      try {
        a = n.adoptFd(opts.fd, 'tun');
      } catch (e) {
        throw wrapOsError(e, `adopt fd ${opts.fd}`);
      }
      if (a.tap !== tap) throw new OsError(22, `fd ${opts.fd} is a ${a.tap ? 'TAP' : 'TUN'} queue (${a.name}), not a ${tap ? 'TAP' : 'TUN'}`);
      r = { fd: opts.fd, name: a.name, ifindex: a.ifindex };
      vnetHdr = a.vnetHdr;
      multiQueue = a.multiQueue;
      if (!vnetHdr) offload = false;
    } else {
      try {
        r = n.tunOpen(opts.name ?? '', tap, !!opts.multiQueue, !!opts.vnetHdr || offload, !!opts.persist);
      } catch (e) {
        throw wrapOsError(e, (e as { syscall?: string }).syscall ?? `TUNSETIFF ${opts.name ?? ''}`);
      }
    }
    this.tap = tap;
    this.opts = opts;
    this.fd = r.fd;
    this.name = r.name;
    this.ifindex = r.ifindex;
    this.vnetHdr = vnetHdr;
    this.multiQueue = multiQueue;
    this.offload = offload;
    try {
      this.offloads = offload ? enableOffloads(r.fd, r.name) : NO_OFFLOADS;
    } catch (e) {
      if (opts.fd === undefined) n.closeFd(r.fd); // an adopted queue stays open: its owner may retry without offloads
      throw e;
    }
    const batch = Math.max(1, opts.batch ?? 64);
    this.slots = allocSlots(batch, slotSize);
    this.rxDesc = new Uint32Array(batch * DESC_STRIDE);
    for (let i = 0; i < batch; i++) this.rxDesc[i * DESC_STRIDE + D_OFF] = HEADROOM;
    this.txDesc = new Uint32Array(batch * DESC_STRIDE);
    this.io = new n.BatchIo(this.fd, 0, this.vnetHdr ? VNET_HDR_LEN : 0, offload);
    this.io.setRxSlots(this.slots.map((s) => s.buf), this.rxDesc, null);
    this.cachedMtu = opts.mtu ?? 1500;
    track(this);
  }

  /** Apply mtu/mac/addresses/up options (called by the static factories). */
  protected async configure(): Promise<void> {
    const o = this.opts;
    const rt = Rtnl.shared();
    try {
      if (o.mtu !== undefined || o.mac !== undefined) await rt.setLink(this.ifindex, { mtu: o.mtu, mac: o.mac });
      const v6 = o.ipv6 ?? (o.addresses ?? []).some((a) => a.includes(':'));
      if (o.up && !v6) {
        await rt.setIpv6(this.ifindex, false);
        this.ipv6Off = true;
      }
      for (const a of o.addresses ?? []) await rt.addAddress(this.ifindex, a, { replace: true, nodad: true });
      if (o.up) await rt.linkUp(this.ifindex);
      this.cachedMtu = (await rt.getLink(this.ifindex)).mtu;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** True once closed. */
  get closed(): boolean { return this.closedFlag; }

  /** MTU as last set or read (see `refresh()`). */
  get mtu(): number { return this.cachedMtu; }

  /** Number of receive slots (max packets per batch). */
  get batchSize(): number { return this.slots.length; }

  /**
   * Receive errors so far by errno name (`{ EIO: 2 }`); a read error drops nothing that was
   * already read, the loop just tries again on the next readiness. For stats()/metrics.
   */
  get readErrorCounts(): Readonly<Record<string, number>> { return this.errCounts; }

  /** Total receive errors so far. */
  get readErrorTotal(): number { return this.errTotal; }

  /**
   * Call `listener` with an OsError (code = errno name) for every receive error, e.g. to log
   * or count it elsewhere. Returns the function that removes the listener. A throwing listener
   * is reported as a process warning and does not stop the receive loop.
   */
  onReadError(listener: ReadErrorListener): () => void {
    this.errListeners.push(listener);
    return () => { this.errListeners = this.errListeners.filter((l) => l !== listener); };
  }

  private readError(errno: number): void {
    const code = errnoName(errno);
    this.errCounts[code] = (this.errCounts[code] ?? 0) + 1;
    this.errTotal++;
    if (!this.errListeners.length) return;
    const err = new OsError(errno, `read ${this.name}`);
    for (const l of this.errListeners) {
      try { l(err); } catch (e) { process.emitWarning(`${this.name}: read error listener threw: ${(e as Error).message}`); }
    }
  }

  private deliver = (count: number): void => {
    if (count < 0) {
      this.readError(-count);
      return;
    }
    const d = this.rxDesc, s = this.slots;
    for (let i = 0; i < count; i++) {
      const slot = s[i];
      slot.off = HEADROOM;
      slot.len = d[i * DESC_STRIDE + D_LEN];
    }
    if (this.handler) this.handler(s, count);
  };

  private iterDeliver = (count: number): void => {
    this.io.stop();
    if (count < 0) this.readError(-count);
    if (count > 0) {
      const d = this.rxDesc, s = this.slots;
      for (let i = 0; i < count; i++) { s[i].off = HEADROOM; s[i].len = d[i * DESC_STRIDE + D_LEN]; }
    }
    const w = this.waiter;
    this.waiter = null;
    w?.(count);
  };

  /** Install the batch handler and start reading. Replaces a previous handler. */
  onBatch(handler: BatchHandler<PacketSlot>): void {
    if (this.closedFlag) throw new Error(`${this.name}: device closed`);
    if (this.waiter) throw new Error(`${this.name}: already being iterated`);
    this.handler = handler;
    if (!this.held) this.io.start(this.deliver);
  }

  /** Timing mode: stamp every batch into `stamps` (see BatchStamps). False with an addon built before it. */
  enableStamps(stamps: BatchStamps): boolean {
    if (this.closedFlag || typeof this.io.setStamps !== 'function') return false;
    this.io.setStamps(stamps);
    return true;
  }

  /**
   * Stop reading (the handler stays installed; `resume()` restarts). Before `onBatch`: the
   * handler is installed without reading until `resume()` (packets wait in the device queue).
   */
  pause(): void {
    this.held = true;
    if (!this.closedFlag) this.io.stop();
  }

  /** Restart reading after `pause()`. */
  resume(): void {
    this.held = false;
    if (!this.closedFlag && this.handler) this.io.start(this.deliver);
  }

  /** Do not keep the event loop alive only for this device. */
  unref(): void { if (!this.closedFlag) this.io.unref(); }
  /** Keep the event loop alive while reading (default). */
  ref(): void { if (!this.closedFlag) this.io.ref(); }

  /** Busy-poll: read one batch now without waiting and hand it to the handler (0 when nothing is queued or on a read error, which is counted). */
  pollNow(): number {
    const h = this.handler;
    if (this.closedFlag || !h || this.waiter) return 0;
    let n: number;
    try {
      n = this.readBatch();
    } catch {
      return 0; // counted and reported by readBatch
    }
    if (n > 0) h(this.slots, n);
    return n;
  }

  /** Read one batch now without waiting (0 when nothing is queued). Fills `slots`. */
  readBatch(): number {
    let count: number;
    try {
      count = this.io.read();
    } catch (e) {
      const err = wrapOsError(e, `read ${this.name}`);
      this.readError(-err.errno);
      throw err;
    }
    const d = this.rxDesc, s = this.slots;
    for (let i = 0; i < count; i++) { s[i].off = HEADROOM; s[i].len = d[i * DESC_STRIDE + D_LEN]; }
    return count;
  }

  /**
   * Async iteration over received batches; reading pauses until the consumer asks for the
   * next batch (backpressure). Ends when the device is closed. Not combinable with onBatch.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<PacketBatch> {
    if (this.handler) throw new Error(`${this.name}: onBatch handler installed`);
    const batch: PacketBatch = { slots: this.slots, count: 0 };
    while (!this.closedFlag) {
      const count = await new Promise<number>((resolve) => {
        this.waiter = resolve;
        this.io.start(this.iterDeliver);
      });
      if (this.closedFlag) return;
      if (count <= 0) continue;
      batch.count = count;
      yield batch;
    }
  }

  /**
   * Write `slots[0..count)`; returns how many were written (the rest were dropped).
   * Offload devices write `buf[off - 10, off + len)`: the caller's virtio_net_hdr comes first
   * (slots with off < 10 are dropped).
   */
  writeBatch(slots: readonly PacketSlot[], count: number): number {
    if (this.closedFlag) return 0;
    if (count > slots.length) count = slots.length;
    if (count <= 0) return 0;
    if (this.txDesc.length < count * DESC_STRIDE) this.txDesc = new Uint32Array(count * DESC_STRIDE);
    const bufs = this.txBufs, d = this.txDesc;
    if (bufs.length < count) bufs.length = count;
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      bufs[i] = s.buf;
      d[i * DESC_STRIDE + D_OFF] = s.off;
      d[i * DESC_STRIDE + D_LEN] = s.len;
    }
    return this.io.write(bufs, d, null, count);
  }

  /** Write one packet (convenience; a batch of one; offload devices: header at buf[off - 10, off)). Returns true when written. */
  writePacket(buf: Buffer, off = 0, len = buf.length - off): boolean {
    return this.writeBatch([{ buf, off, len }], 1) === 1;
  }

  // --- link configuration over rtnetlink (this process's namespace)

  /** Set the MTU. */
  async setMtu(mtu: number): Promise<void> {
    await Rtnl.shared().setMtu(this.ifindex, mtu);
    this.cachedMtu = mtu;
  }
  /** Bring the link up. */
  async up(): Promise<void> { await Rtnl.shared().linkUp(this.ifindex); }
  /** Bring the link down. */
  async down(): Promise<void> { await Rtnl.shared().linkDown(this.ifindex); }
  /** Add an address (CIDR), replacing an identical one; IPv6 without DAD (turning IPv6 back on if it was turned off here). */
  async addAddress(cidr: string): Promise<void> {
    if (cidr.includes(':') && this.ipv6Off) {
      await Rtnl.shared().setIpv6(this.ifindex, true);
      this.ipv6Off = false;
    }
    await Rtnl.shared().addAddress(this.ifindex, cidr, { replace: true, nodad: true });
  }
  /** Delete an address (CIDR). */
  async delAddress(cidr: string): Promise<void> { await Rtnl.shared().delAddress(this.ifindex, cidr); }
  /** Addresses currently on the link. */
  async addresses(): Promise<AddressInfo[]> { return Rtnl.shared().listAddresses(this.ifindex); }
  /** Read the link back from the kernel (also refreshes `mtu`). */
  async info(): Promise<LinkInfo> {
    const l = await Rtnl.shared().getLink(this.ifindex);
    this.cachedMtu = l.mtu;
    return l;
  }

  /**
   * TUNSETPERSIST: with `on` the device outlives this process (a crash leaves it, with its
   * address and routes, for the next start to adopt); off, it disappears with its last fd.
   */
  setPersist(on: boolean): void {
    if (this.closedFlag) throw new OsError(9, `TUNSETPERSIST ${this.name}`, 'device closed');
    try {
      native().tunSetPersist(this.fd, on);
    } catch (e) {
      throw wrapOsError(e, `TUNSETPERSIST ${this.name}`);
    }
  }

  /** Stop reading and close the queue fd (the device disappears with its last fd unless persistent). Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.handler = null;
    this.io.close();
    openDevices.delete(this);
    const w = this.waiter;
    this.waiter = null;
    w?.(0);
  }
}

/**
 * TUNSETVNETHDRSZ 10 and TUNSETOFFLOAD: try CSUM|TSO4|TSO6|USO4|USO6, then without USO
 * (kernels before 6.2 refuse unknown bits with EINVAL). Throws when even the TCP set is refused.
 */
function enableOffloads(fd: number, name: string): DeviceOffloads {
  const n = native();
  let err = n.tunSetVnetHdrSz(fd, VNET_HDR_LEN);
  if (err < 0) throw new OsError(-err, `TUNSETVNETHDRSZ ${name}`);
  const tcp = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (n.tunSetOffload(fd, tcp | TUN_F_USO4 | TUN_F_USO6) === 0) return Object.freeze({ csum: true, tso4: true, tso6: true, uso4: true, uso6: true });
  err = n.tunSetOffload(fd, tcp);
  if (err < 0) throw new OsError(-err, `TUNSETOFFLOAD ${name}`);
  return Object.freeze({ csum: true, tso4: true, tso6: true, uso4: false, uso6: false });
}

/** A layer-3 TUN device (IFF_TUN | IFF_NO_PI): slots hold bare IPv4/IPv6 packets. */
export class TunDevice extends BaseDevice {
  /** Always 'tun'. */
  readonly kind = 'tun' as const;

  private constructor(opts: DeviceOptions) { super(false, opts); }

  /** Create (or attach to) a TUN device and apply mtu/addresses/up options. */
  static async create(opts: DeviceOptions = {}): Promise<TunDevice> {
    const d = new TunDevice(opts);
    await d.configure();
    return d;
  }

  /** Open synchronously without any link configuration. */
  static open(opts: DeviceOptions = {}): TunDevice {
    return new TunDevice(opts);
  }

  /** Open one more queue of this multi-queue device (a separate fd read/written on its own). */
  openQueue(opts: { batch?: number; slotSize?: number } = {}): TunDevice {
    if (!this.multiQueue) throw new Error(`${this.name}: not opened with multiQueue`);
    return new TunDevice({ ...this.opts, ...opts, name: this.name, mtu: undefined, persist: false, fd: undefined });
  }
}

/** A layer-2 TAP device (IFF_TAP | IFF_NO_PI): slots hold Ethernet frames. */
export class TapDevice extends BaseDevice {
  /** Always 'tap'. */
  readonly kind = 'tap' as const;
  private cachedMac = '';

  private constructor(opts: DeviceOptions) { super(true, opts); }

  /** Create (or attach to) a TAP device and apply mtu/mac/addresses/up options. */
  static async create(opts: DeviceOptions = {}): Promise<TapDevice> {
    const d = new TapDevice(opts);
    await d.configure();
    d.cachedMac = (await Rtnl.shared().getLink(d.ifindex)).mac ?? '';
    return d;
  }

  /** Open synchronously without any link configuration (`mac` is read on first access). */
  static open(opts: DeviceOptions = {}): TapDevice {
    return new TapDevice(opts);
  }

  /** The device's MAC address (aa:bb:cc:dd:ee:ff). */
  get mac(): string {
    if (!this.cachedMac && !this.closed) this.cachedMac = Rtnl.shared().getLinkSync(this.ifindex).mac ?? '';
    return this.cachedMac;
  }

  /** Set the MAC address. */
  async setMac(mac: string): Promise<void> {
    await Rtnl.shared().setMac(this.ifindex, mac);
    this.cachedMac = mac.toLowerCase();
  }

  /** Open one more queue of this multi-queue device. */
  openQueue(opts: { batch?: number; slotSize?: number } = {}): TapDevice {
    if (!this.multiQueue) throw new Error(`${this.name}: not opened with multiQueue`);
    return new TapDevice({ ...this.opts, ...opts, name: this.name, mtu: undefined, mac: undefined, persist: false, fd: undefined });
  }
}
