/**
 * overlayd's supervisor and packet process (issue #14): the daemon survives the death of its
 * packet path, and is upgraded without losing a packet.
 *
 * The supervisor (the process started as `overlayd`) validates the configuration, opens the
 * tunnel devices' queues (one; two for dual-stack VXLAN: flannel.<VNI> and flannel-v6.<VNI>),
 * the backend's UDP sockets (one per underlay family) and the healthz/metrics listening socket,
 * and holds them for its whole life. It forwards nothing: the packet process, a child started with
 * the same command line, inherits the descriptors (spawn's stdio array, from fd 4 on: devices,
 * sockets, healthz) and
 * runs the whole daemon on them (src/overlayd/daemon.ts's Overlayd: backend, peers file or etcd,
 * healthz/metrics, subnet.env). Its device and socket start *paused*: nothing is read until its
 * peers are applied, so no packet is taken before it can be forwarded.
 *
 * The control plane stays in the packet process because it has to be rebuilt from its sources
 * anyway (the peers file, etcd's leases) and both are idempotent: a new packet process re-reads
 * them, re-applies the address and routes with replace (no change in the kernel) and rewrites the
 * same subnet.env. The device never goes away (the supervisor's descriptor keeps it), so neither do
 * its address and routes; the kernel keeps queueing: packets for the device in its queue
 * (txqueuelen, {@link DEVICE_TXQUEUELEN}), datagrams from peers in the socket's receive buffer
 * (SO_RCVBUF, {@link DEFAULT_SOCKET_BUFFER}), and healthz connections in the listen backlog.
 *
 * The packet process dies: the supervisor starts the next one at once; after several deaths in a
 * row it waits (backoff), and after {@link MAX_DEATHS} within {@link DEATH_WINDOW_MS} it gives up and
 * exits 1, loudly. SIGTERM/SIGINT go to the packet process (which removes what it created), then
 * the supervisor closes the descriptors (the device goes) and exits with its status; SIGHUP is
 * passed on.
 *
 * Upgrade (`overlayd --takeover`): the new overlayd connects to the old supervisor's control socket
 * (a SOCK_SEQPACKET Unix socket, default /run/overlayd/<device>.sock, the first device's name), receives
 * the descriptors (SCM_RIGHTS), starts its own packet process on them and, once that one forwards,
 * tells the old supervisor, which stops its packet process (without removing anything) and exits.
 * For a moment both packet processes read the same queue and socket: every packet is taken by one
 * of them, and both know every peer.
 *
 * Single process (`--no-supervisor`, and with --transport dgram or --backend-module, whose
 * descriptors cannot be handed on): the daemon runs in overlayd itself, as before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { native, type NativeFdWatch } from '../tun/native.js';
import { Rtnl } from '../tun/rtnl.js';
import { TunDevice } from '../tun/device.js';
import { createTransport, type MmsgUdpTransport } from '../tun/udp.js';
import { DEFAULT_BATCH, DEFAULT_SOCKET_BUFFER, defaultTransportOptions } from '../vtep/io.js';
import type { CreateTransportOptions, DataplaneIo, OpenDeviceOptions } from '../vtep/options.js';
import { DEFAULT_OFFLOAD } from '../vtep/options.js';
import type { PacketDevice, UdpTransport } from '../tun/types.js';
import { version, type CliOptions } from './cli.js';
import { ConfigError } from './config.js';
import { ipAddr } from '../codec/addr.js';
import { defaultBackendFactory, ipv6Refusal } from './backend-factory.js';
import { devicesOf, preflight, resolveConfig, resolveEtcdConfig, stderrLogger, underlaySockets, type DaemonConfig, type Logger, type OverlaydOptions } from './daemon.js';
import { DeviceOwnership } from './ownership.js';
import { sdNotify } from './sdnotify.js';
import { CHILD_FD, PACKET_ENV, packetSpawnArgs, takeEarly, type EarlyChild } from './early.js';

export { PACKET_ENV } from './early.js';
/** Deaths of the packet process within {@link DEATH_WINDOW_MS} after which the supervisor gives up. */
export const MAX_DEATHS = 5;
/** The window of {@link MAX_DEATHS}, ms. */
export const DEATH_WINDOW_MS = 30_000;
/** Longest wait before a restart (the backoff doubles from 100 ms after the second death in the window). */
export const MAX_BACKOFF_MS = 2_000;
/**
 * txqueuelen of the tunnel device: the packets its queue holds while no packet process reads
 * (the kernel's TUN ring has this many entries; beyond them it drops). A restart takes about
 * 0.3 s (README, Reliability): 4,000 entries cover 13,000 packets/s of new flows for that long, and
 * TCP, which stops at its window when ACKs stop, needs at most its window (6 MB of 1,400-byte
 * segments = 4,300 entries without TSO; with TSO, one entry per 64 KB super-packet: about 100).
 */
export const DEVICE_TXQUEUELEN = 4_000;
/** How long SIGTERM waits for the packet process before killing it, ms. */
const STOP_TIMEOUT_MS = 15_000;
/** How long a takeover waits for each step of the other side, ms. */
const TAKEOVER_TIMEOUT_MS = 30_000;
/** Largest control message. */
const CTRL_MAX = 4096;

/** What the supervisor tells its packet process (environment {@link PACKET_ENV}). */
interface PacketEnv {
  /** The inherited devices: name and descriptor number. */
  devs: { name: string; fd: number }[];
  /** The inherited UDP sockets' descriptor numbers. */
  socks: number[];
  http?: number;
  /** Packet processes started before this one by this supervisor (a standby learns it when activated). */
  restarts: number;
  /** A standby: loaded, waiting for {@link ParentMsg} activate before it starts the daemon. */
  standby: boolean;
  /** The device existed before this process (src/overlayd/ownership.ts: reconcile it with the peers). */
  adopt: boolean;
  /**
   * Started early (src/overlayd/early.ts): nothing inherited yet; the descriptors and the fields
   * above arrive on this SOCK_SEQPACKET socket in one CtrlMsg 'activate'.
   */
  ctrl?: number;
}

/** Messages between supervisor and packet process (IPC). */
type ChildMsg = { t: 'ready' } | { t: 'standby' };
type ParentMsg = { t: 'handover' } | { t: 'activate'; restarts: number };

/** Control socket messages (JSON, one per SOCK_SEQPACKET message). */
type CtrlMsg =
  /** `devs`: every device asked for (`dev` the first; an overlayd before dual stack sends `dev` only). */
  | { op: 'takeover'; pid: number; version: string; dev: string; port: number; devs?: string[] }
  /** The descriptors: the devices of `devs` (absent: `dev` alone), `socks` UDP sockets (absent: 1), the healthz one. */
  | { op: 'fds'; ok: true; pid: number; version: string; dev: string; port: number; http?: string; offload: boolean; devs?: string[]; socks?: number }
  | { op: 'fds'; ok: false; error: string }
  | { op: 'forwarding' }
  | { op: 'abort'; error: string }
  | { op: 'done' }
  /** Supervisor to an early packet process, with its descriptors: the devices named in `devs`, `socks` sockets (and http). */
  | { op: 'activate'; adopt: boolean; http: boolean; devs: string[]; socks: number };

/** Whether a command line runs under the supervisor (else: one process). */
export function supervised(o: CliOptions): boolean {
  return o.noSupervisor !== true && o.transport === 'mmsg' && o.backendModule === undefined;
}

/** inode of the initial network namespace (the kernel's PROC_NET_INIT_INO). */
const INIT_NETNS_INO = 4026531840;

/**
 * The default control socket of a device: /run/overlayd/<device>.sock in the host's network
 * namespace, /run/overlayd/netns-<inode>/<device>.sock in another one. A socket path lives in
 * the file system, which namespaces share: without the namespace in it, overlayds of the same
 * device name in two namespaces would find (and could take over) each other.
 */
export function defaultControlSocket(dev: string): string {
  let ino = INIT_NETNS_INO;
  try { ino = statSync('/proc/self/ns/net').ino; } catch { /* no /proc: the host's path */ }
  return ino === INIT_NETNS_INO ? `/run/overlayd/${dev}.sock` : `/run/overlayd/netns-${ino}/${dev}.sock`;
}

// ---------------------------------------------------------------------------------------------
// The packet process side

/** An address in one spelling (for comparing IPv6 addresses); unchanged when it is none. */
function canonical(a: string): string {
  try { return ipAddr(a).toString(); } catch { return a; }
}

/**
 * The device/socket I/O of a packet process: the inherited TUN queues and UDP sockets instead of
 * new ones (each backend gets its device by name and its socket by bound address), paused until
 * {@link release} (the daemon has applied its peers by then).
 */
export class InheritedIo implements DataplaneIo {
  private readonly devices: TunDevice[] = [];
  private readonly transports: MmsgUdpTransport[] = [];
  private released = false;
  /** The inherited sockets' bound addresses and ports (kept open for the packet process's life). */
  private udpInfo: { fd: number; port: number; address: string }[] | undefined;

  constructor(private readonly devs: readonly { name: string; fd: number }[], private readonly socks: readonly number[]) {}

  openTun(name: string, opts?: OpenDeviceOptions): PacketDevice {
    const h = this.devs.find((x) => x.name === name);
    if (h === undefined) throw new Error(`the supervisor holds no device ${name} (it holds ${this.devs.map((x) => x.name).join(', ') || 'none'})`);
    const d = TunDevice.open({ fd: h.fd, batch: DEFAULT_BATCH, offload: opts?.offload === true });
    if (d.name !== name) throw new Error(`the inherited device is ${d.name}, the configuration wants ${name}`);
    if (!this.released) d.pause();
    this.devices.push(d);
    return d;
  }

  openTap(name: string): PacketDevice {
    throw new Error(`${name}: the supervisor hands over TUN devices only (run with --no-supervisor)`);
  }

  /**
   * A transport bound to an inherited socket's address and port gets a duplicate of it (closing
   * it leaves the inherited one open, for a rebind back to that address); any other (VXLAN's
   * source-port pool on ephemeral ports, a rebind to a new underlay address) a new socket.
   */
  createTransport(kind: 'dgram' | 'mmsg', opts?: CreateTransportOptions): UdpTransport {
    if (kind !== 'mmsg') throw new Error('the supervisor hands over a recvmmsg/sendmmsg socket only (--transport mmsg)');
    const n = native();
    this.udpInfo ??= this.socks.map((fd) => { const a = n.adoptFd(fd, 'udp'); return { fd, port: a.port, address: canonical(a.address) }; });
    const info = this.udpInfo;
    const fdFor = (port: number, address: string): number | undefined => {
      const a = canonical(address);
      const s = info.find((x) => x.port === port && x.address === a);
      return s === undefined ? undefined : n.dupFd(s.fd);
    };
    const t = createTransport('mmsg', { ...defaultTransportOptions('mmsg', opts), fdFor });
    if (!this.released) t.pause();
    this.transports.push(t);
    return t;
  }

  /** Start reading the device and the socket. */
  release(): void {
    this.released = true;
    for (const d of this.devices) d.resume();
    for (const t of this.transports) t.resume();
  }

  /** Stop reading (a handover: the next packet process takes everything from here). */
  pause(): void {
    for (const d of this.devices) d.pause();
    for (const t of this.transports) t.pause();
  }
}

/** A packet process's view of its supervisor (when this process is one; see {@link packetProcess}). */
export interface PacketProcess {
  /** Restarts before this one. */
  readonly restarts: number;
  /** Resolves at once for an active packet process; a standby's when the supervisor activates it. */
  activated(): Promise<void>;
  /** The I/O to give the backend. */
  readonly io: InheritedIo;
  /** Overlayd options: the inherited I/O and healthz socket, no preflight (the supervisor did it). */
  daemonOptions(cfg: DaemonConfig): Promise<Pick<OverlaydOptions, 'io' | 'httpFd' | 'skipPreflight' | 'printLease' | 'metrics' | 'owner'>>;
  /** The daemon has started: start forwarding and tell the supervisor. */
  started(log?: Logger): void;
}

/** This process as a packet process, or undefined when it is not one. */
export function packetProcess(env: NodeJS.ProcessEnv = process.env): PacketProcess | undefined {
  const raw = env[PACKET_ENV];
  if (raw === undefined || raw === '' || typeof process.send !== 'function') return undefined;
  const pe = JSON.parse(raw) as PacketEnv;
  delete process.env[PACKET_ENV]; // not inherited by anything this process starts
  // a terminal's ^C reaches the whole process group: the supervisor answers it (SIGTERM to us, in order)
  process.on('SIGINT', () => undefined);
  let io: InheritedIo | undefined = pe.ctrl === undefined ? new InheritedIo(pe.devs, pe.socks) : undefined;
  // the supervisor is gone (killed): go with it, leaving everything as a crash does (an early
  // packet process not yet activated has nothing and says nothing: no supervisor ran after all)
  process.on('disconnect', () => {
    if (io === undefined) process.exit(0);
    stderrLogger.error('supervisor gone; packet process exiting');
    process.exit(1);
  });
  let activation: Promise<void> = Promise.resolve();
  if (pe.ctrl !== undefined) {
    const conn = new CtrlConn(pe.ctrl);
    activation = conn.next(2 ** 31 - 1).then((m) => {
      conn.close();
      if (m === undefined || m.msg.op !== 'activate' || m.fds.length !== m.msg.devs.length + m.msg.socks + (m.msg.http ? 1 : 0)) {
        for (const f of m?.fds ?? []) native().closeFd(f);
        process.exit(0); // not needed after all (see early.ts)
      }
      const a = m.msg;
      const devs = a.devs.map((name, i) => ({ name, fd: m.fds[i]! }));
      const socks = m.fds.slice(devs.length, devs.length + a.socks);
      const http = a.http ? m.fds[devs.length + a.socks] : undefined;
      Object.assign(pe, { devs, socks, adopt: a.adopt, restarts: 0, standby: false }, http !== undefined ? { http } : {});
      io = new InheritedIo(devs, socks);
    });
  } else if (pe.standby) {
    activation = new Promise((resolve) => {
      const on = (m: ParentMsg): void => {
        if (m.t !== 'activate') return;
        pe.restarts = m.restarts;
        process.off('message', on);
        resolve();
      };
      process.on('message', on);
    });
    // loaded: everything is imported by now, and what the daemon imports lazily (prom-client) too
    void import('./metrics.js').catch(() => undefined).then(() => process.send!({ t: 'standby' } satisfies ChildMsg));
  }
  const active = (): InheritedIo => {
    if (io === undefined) throw new Error('packet process used before its activation');
    return io;
  };
  return {
    get restarts() { return pe.restarts; },
    activated: () => activation,
    get io() { return active(); },
    async daemonOptions(cfg: DaemonConfig) {
      const o: Pick<OverlaydOptions, 'io' | 'httpFd' | 'skipPreflight' | 'printLease' | 'metrics' | 'owner'> = {
        io: active(),
        skipPreflight: true,
        // the device is marked and made persistent by this process's backend, reconciled when it was there before
        owner: await DeviceOwnership.inherited(cfg.netConf.backend.type, devicesOf(cfg), pe.adopt || pe.restarts > 0),
        metrics: async (reg) => {
          const { Gauge } = await import('prom-client'); // loaded only with healthz/metrics (as metrics.ts is)
          new Gauge({
            name: 'overlayd_packet_process_restarts', registers: [reg],
            help: 'Packet processes the supervisor started after the first (deaths of the packet path; the other counters restart from 0 with each).',
            collect() { this.set(pe.restarts); },
          });
        },
      };
      if (pe.http !== undefined) o.httpFd = pe.http;
      if (pe.restarts > 0) o.printLease = () => undefined; // the lease line was printed by the first one
      return o;
    },
    started(log: Logger = stderrLogger) {
      const io = active();
      io.release();
      process.on('message', (m: ParentMsg) => {
        if (m.t !== 'handover') return;
        io.pause();
        log.info('handing over: stopped forwarding; exiting (nothing removed)');
        process.exit(0);
      });
      process.send!({ t: 'ready' } satisfies ChildMsg);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The supervisor side

/** The descriptors the supervisor holds. */
interface Held {
  /** The devices' queues (flannel0; flannel.<VNI>, flannel-v6.<VNI>). */
  devs: { name: string; fd: number }[];
  /** The UDP sockets (one per underlay family). */
  socks: number[];
  http?: number;
  /** The healthz address of `http`, "ip:port". */
  httpAddr?: string;
}

/** All descriptors of `h` in the order they are handed on: devices, sockets, healthz. */
function heldFds(h: Held): number[] {
  return [...h.devs.map((d) => d.fd), ...h.socks, ...(h.http !== undefined ? [h.http] : [])];
}

function closeHeld(h: Held | undefined): void {
  if (!h) return;
  for (const f of heldFds(h)) native().closeFd(f);
}

function osMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Open the device queues, the UDP sockets and the healthz socket for `cfg`. Throws ConfigError (nothing left open). */
async function openHeld(cfg: DaemonConfig): Promise<Held> {
  const n = native();
  const type = cfg.netConf.backend.type;
  const vnetHdr = (cfg.offload ?? DEFAULT_OFFLOAD) === 'auto';
  const held: Held = { devs: [], socks: [] };
  for (const d of devicesOf(cfg)) {
    try {
      held.devs.push({ name: d.name, fd: n.tunOpen(d.name, false, false, vnetHdr, false).fd });
    } catch (e) {
      closeHeld(held);
      const code = (e as { code?: string }).code;
      throw new ConfigError(`backend ${type} failed to start: ${d.name}: ${osMessage(e)}${code === 'EPERM' || code === 'EACCES' ? ' (CAP_NET_ADMIN required)' : ''}`);
    }
  }
  for (const s of underlaySockets(cfg)) {
    let fd = -1;
    try {
      fd = n.udpOpen(s.family, s.address, s.port, false, s.family === 6); // IPv6-only, as the backend's own (beside the IPv4 socket on the same port)
      n.setSockBuf(fd, DEFAULT_SOCKET_BUFFER, DEFAULT_SOCKET_BUFFER);
      held.socks.push(fd);
    } catch (e) {
      if (fd >= 0) n.closeFd(fd);
      closeHeld(held);
      if ((e as { code?: string }).code === 'EADDRINUSE') throw new ConfigError(`UDP port ${s.port}${s.family === 6 ? ' (IPv6)' : ''} is already in use`);
      throw new ConfigError(`backend ${type} failed to start: UDP ${s.address} port ${s.port}: ${osMessage(e)}`);
    }
  }
  if (cfg.healthz) {
    try {
      held.http = n.tcpListen(cfg.healthz.ip, cfg.healthz.port);
      held.httpAddr = `${cfg.healthz.ip}:${cfg.healthz.port}`;
    } catch (e) {
      closeHeld(held);
      const { httpListenError } = await import('./metrics.js');
      throw httpListenError(cfg.healthz.ip, cfg.healthz.port, e as NodeJS.ErrnoException);
    }
  }
  return held;
}

/** One SOCK_SEQPACKET connection of the control socket, read with uv_poll readiness. */
class CtrlConn {
  private readonly watch: NativeFdWatch;
  private readonly buf = Buffer.alloc(CTRL_MAX);
  private closed = false;
  private waiter: ((m: { msg: CtrlMsg; fds: number[] } | undefined) => void) | undefined;
  private readonly queue: ({ msg: CtrlMsg; fds: number[] } | undefined)[] = [];

  constructor(readonly fd: number, private readonly onMessage?: (m: CtrlMsg, fds: number[]) => void, private readonly onClose?: () => void) {
    this.watch = new (native().FdWatch)(fd);
    this.watch.start(() => this.readable());
  }

  private readable(): void {
    for (;;) {
      if (this.closed) return;
      let r: { len: number; fds: number[] } | null;
      try {
        r = native().unixRecv(this.fd, this.buf);
      } catch {
        r = { len: 0, fds: [] };
      }
      if (r === null) return;
      if (r.len === 0) {
        this.close();
        return;
      }
      let msg: CtrlMsg;
      try {
        msg = JSON.parse(this.buf.toString('utf8', 0, r.len)) as CtrlMsg;
      } catch {
        for (const f of r.fds) native().closeFd(f);
        continue; // not ours: ignored
      }
      this.deliver({ msg, fds: r.fds });
    }
  }

  private deliver(m: { msg: CtrlMsg; fds: number[] } | undefined): void {
    if (m && this.onMessage) {
      this.onMessage(m.msg, m.fds);
      return;
    }
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w(m);
    else this.queue.push(m);
  }

  /** The next message (undefined: the connection closed), waiting up to `ms`. */
  next(ms: number): Promise<{ msg: CtrlMsg; fds: number[] } | undefined> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no answer within ${ms} ms`));
      }, ms);
      this.waiter = (m) => {
        clearTimeout(t);
        resolve(m);
      };
    });
  }

  send(msg: CtrlMsg, fds: number[] = []): boolean {
    if (this.closed) return false;
    try {
      native().unixSend(this.fd, Buffer.from(JSON.stringify(msg)), fds);
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch.close();
    native().closeFd(this.fd);
    this.onClose?.();
    this.deliver(undefined);
  }
}

/** The supervisor. See the module comment. */
class Supervisor {
  private child: ChildProcess | undefined;
  /** A loaded packet process waiting to take over when `child` dies (no node start-up in the gap). */
  private standby: ChildProcess | undefined;
  private standbyTimer: NodeJS.Timeout | undefined;
  private childReady = false;
  private readyOnce = false;
  private restarts = 0;
  private deaths: number[] = [];
  private diedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private handingOver = false;
  private listenFd = -1;
  private listenWatch: NativeFdWatch | undefined;
  private listenIno = 0;
  private readonly conns = new Set<CtrlConn>();
  private takeoverConn: CtrlConn | undefined;
  private firstReady: { resolve: () => void; reject: (code: number) => void } | undefined;
  private readonly keepAlive = setInterval(() => undefined, 1 << 30);

  constructor(
    private readonly cfg: DaemonConfig,
    /** The devices' names joined by '+' (for log lines: flannel.1, flannel.1+flannel-v6.1). */
    private readonly dev: string,
    private held: Held | undefined,
    private readonly argv: string[],
    private readonly ctrlPath: string,
    private readonly log: Logger,
    /** The device was there before us (the packet processes reconcile it). */
    private readonly adopt: boolean,
  ) {}

  /** The devices' names. */
  private get devNames(): string[] {
    return this.dev.split('+');
  }

  /** Start the first packet process; resolves once it forwards, rejects with its exit status. */
  startFirst(early?: EarlyChild): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstReady = { resolve, reject };
      this.child = (early && this.activateEarly(early)) ?? this.spawnChild(false);
    });
  }

  /** Hand the descriptors to the packet process started early (early.ts); undefined when it is gone. */
  private activateEarly(e: EarlyChild): ChildProcess | undefined {
    const h = this.held!;
    const n = native();
    let sent = false;
    if (e.child.exitCode === null && e.child.signalCode === null) {
      try {
        const msg: CtrlMsg = { op: 'activate', adopt: this.adopt, http: h.http !== undefined, devs: h.devs.map((d) => d.name), socks: h.socks.length };
        n.unixSend(e.ctrl, Buffer.from(JSON.stringify(msg)), heldFds(h));
        sent = true;
      } catch { /* it died: start one the usual way */ }
    }
    n.closeFd(e.ctrl);
    if (!sent) {
      e.child.kill('SIGKILL');
      return undefined;
    }
    return this.attach(e.child, false);
  }

  private spawnChild(standby: boolean): ChildProcess {
    const h = this.held!;
    // the held descriptors from CHILD_FD.first on, in heldFds' order
    let next = CHILD_FD.first;
    const env: PacketEnv = {
      devs: h.devs.map((d) => ({ name: d.name, fd: next++ })), socks: h.socks.map(() => next++), restarts: this.restarts, standby, adopt: this.adopt,
    };
    if (h.http !== undefined) env.http = next;
    const stdio: (number | 'ignore' | 'inherit' | 'ipc')[] = ['ignore', 'inherit', 'inherit', 'ipc', ...heldFds(h)];
    const childEnv: NodeJS.ProcessEnv = { ...process.env, [PACKET_ENV]: JSON.stringify(env) };
    delete childEnv.NOTIFY_SOCKET; // systemd hears from the supervisor, its main process
    const child = spawn(process.execPath, packetSpawnArgs(this.argv), {
      stdio,
      env: childEnv,
      // Not detached: a new session would be a new scheduler autogroup (kernel.sched_autogroup_enabled),
      // which gives the packet process a CPU share of its own against everything else on the host
      // (in the benchmark, the receiving application starved: 1400 B flood 0.6x of --no-supervisor).
      // A terminal's ^C reaches it too; a packet process ignores SIGINT (see packetProcess) and the
      // supervisor stops it in order.
    });
    return this.attach(child, standby);
  }

  /** Follow a packet process (ready, standby loaded, exit). */
  private attach(child: ChildProcess, standby: boolean): ChildProcess {
    if (!standby) this.childReady = false;
    child.on('message', (m: ChildMsg) => {
      if (m.t === 'standby' && child === this.standby) this.log.info(`standby packet process ${child.pid} loaded`);
      if (m.t !== 'ready' || child !== this.child) return;
      this.childReady = true;
      if (!this.readyOnce) {
        this.readyOnce = true;
        const f = this.firstReady;
        this.firstReady = undefined;
        f?.resolve();
      } else {
        this.log.info(`packet process ${child.pid} forwarding on ${this.dev} ${Math.round(performance.now() - this.diedAt)} ms after the last one died (restart ${this.restarts})`);
      }
      this.ensureStandby(0);
    });
    child.on('exit', (code, sig) => this.exited(child, code, sig));
    child.on('error', (e) => this.log.error(`packet process: ${e.message}`));
    return child;
  }

  /** Start a standby in `ms` unless one runs (or is due). */
  private ensureStandby(ms: number): void {
    if (this.standby || this.standbyTimer || this.stopping || this.handingOver || !this.held) return;
    this.standbyTimer = setTimeout(() => {
      this.standbyTimer = undefined;
      if (this.standby || this.stopping || this.handingOver || !this.held) return;
      this.standby = this.spawnChild(true);
    }, ms);
  }

  private exited(child: ChildProcess, code: number | null, sig: NodeJS.Signals | null): void {
    if (child === this.standby) {
      this.standby = undefined;
      if (!this.stopping && !this.handingOver) {
        this.log.error(`standby packet process ${child.pid} ${sig ? `killed by ${sig}` : `exited with status ${code}`}; starting another in 1 s`);
        this.ensureStandby(1000);
      }
      return;
    }
    if (child !== this.child) return;
    this.child = undefined;
    if (this.stopping || this.handingOver) return; // stop()/handover wait for this exit themselves
    const how = sig ? `killed by ${sig}` : `exited with status ${code}`;
    if (!this.readyOnce) {
      // the first one failed to start: it said why (one line); give its status on
      const f = this.firstReady;
      this.firstReady = undefined;
      f?.reject(code === 2 ? 2 : 1);
      return;
    }
    const now = performance.now();
    this.diedAt = now;
    this.deaths = this.deaths.filter((t) => now - t < DEATH_WINDOW_MS);
    this.deaths.push(now);
    if (this.deaths.length >= MAX_DEATHS) {
      this.log.error(`packet process ${child.pid} ${how}: ${this.deaths.length} deaths within ${DEATH_WINDOW_MS / 1000} s; giving up (${this.dev} goes away with us)`);
      this.exit(1);
      return;
    }
    const k = this.deaths.length;
    const delay = k <= 1 ? 0 : Math.min(100 * 2 ** (k - 2), MAX_BACKOFF_MS);
    this.log.error(`packet process ${child.pid} ${how}${this.childReady ? '' : ' before it forwarded'}; ${delay === 0 ? 'restarting it now' : `restarting it in ${delay} ms`} (${k} of ${MAX_DEATHS} deaths allowed within ${DEATH_WINDOW_MS / 1000} s); ${this.dev} and its routes stay`);
    const next = (): void => {
      this.restartTimer = undefined;
      this.restarts++;
      const sb = this.standby;
      if (sb && sb.exitCode === null && sb.signalCode === null) {
        this.standby = undefined;
        this.child = sb;
        this.childReady = false;
        sb.send({ t: 'activate', restarts: this.restarts } satisfies ParentMsg);
      } else {
        this.child = this.spawnChild(false);
      }
    };
    if (delay === 0) next();
    else this.restartTimer = setTimeout(next, delay);
  }

  /** SIGTERM/SIGINT: stop the packet process (it removes what it created), then close the descriptors. */
  stop(sig: string): void {
    if (this.stopping) {
      this.log.error(`${sig} again while stopping; exiting now`);
      this.child?.kill('SIGKILL');
      this.exit(1);
      return;
    }
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const standbyGone = this.dropStandby();
    try { sdNotify('STOPPING=1'); } catch { /* logged at start */ }
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.log.info(`${sig}: stopping (no packet process running)`);
      this.exit(0);
      return;
    }
    this.log.info(`${sig}: stopping packet process ${child.pid}`);
    const t = setTimeout(() => {
      this.log.error(`packet process ${child.pid} did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing it`);
      child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(t);
      // the standby holds the device's queue too until it has exited
      void standbyGone.then(() => {
        closeHeld(this.held);
        this.held = undefined;
        // the packet process removed what it created but the device, which goes with our descriptor
        if (this.cfg.keepDeviceOnExit !== true) {
          for (const dev of this.devNames) {
            let gone = false;
            try { Rtnl.shared().getLinkSync(dev); } catch { gone = true; }
            if (gone) this.log.info(`closed ${dev}: the device is gone`);
            else this.log.error(`closed ${dev}, but the device is still there after stop`);
          }
        }
        this.exit(code ?? 1);
      });
    });
    child.kill('SIGTERM');
  }

  /**
   * Stop the standby (it has started nothing). Resolves once it has exited: until then it still
   * holds the device's queue (a SIGKILLed process closes its descriptors only when it gets a CPU to
   * exit on, which on a loaded machine can be after the packet process has stopped).
   */
  private dropStandby(): Promise<void> {
    if (this.standbyTimer) clearTimeout(this.standbyTimer);
    this.standbyTimer = undefined;
    const sb = this.standby;
    this.standby = undefined;
    if (!sb || sb.exitCode !== null || sb.signalCode !== null) return Promise.resolve();
    const gone = new Promise<void>((r) => sb.once('exit', () => r()));
    sb.kill('SIGKILL');
    return gone;
  }

  /** SIGHUP: reload the peers (in the packet process). */
  hup(): void {
    this.child?.kill('SIGHUP');
  }

  /** Close everything and exit with `code`. */
  exit(code: number, unlinkCtrl = true): void {
    void this.dropStandby();
    this.closeControl(unlinkCtrl);
    closeHeld(this.held);
    this.held = undefined;
    clearInterval(this.keepAlive);
    process.exit(code);
  }

  // ---- the control socket (the old side of a takeover)

  /** Listen on the control socket. A live socket of another overlayd there (another namespace) is left alone. */
  listen(): void {
    const n = native();
    const path = this.ctrlPath;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (e) {
      this.log.error(`control socket ${path}: ${osMessage(e)}; --takeover of this overlayd is not possible`);
      return;
    }
    try {
      const probe = n.unixConnect(path);
      n.closeFd(probe);
      this.log.error(`control socket ${path} belongs to another running overlayd (in another network namespace?); not listening (--takeover of this one is not possible; use --control-socket)`);
      return;
    } catch {
      // nobody there (ENOENT) or a stale file (ECONNREFUSED)
    }
    try {
      try { unlinkSync(path); } catch { /* none */ }
      this.listenFd = n.unixListen(path);
      this.listenIno = statSync(path).ino;
    } catch (e) {
      this.log.error(`control socket ${path}: ${osMessage(e)}; --takeover of this overlayd is not possible`);
      return;
    }
    this.listenWatch = new n.FdWatch(this.listenFd);
    this.listenWatch.start(() => {
      for (;;) {
        let c: number;
        try {
          c = n.unixAccept(this.listenFd);
        } catch {
          return;
        }
        if (c < 0) return;
        const conn: CtrlConn = new CtrlConn(c, (m, fds) => this.ctrlMessage(conn, m, fds), () => this.ctrlClosed(conn));
        this.conns.add(conn);
      }
    });
  }

  private closeControl(unlink: boolean): void {
    this.listenWatch?.close();
    this.listenWatch = undefined;
    if (this.listenFd >= 0) native().closeFd(this.listenFd);
    this.listenFd = -1;
    for (const c of [...this.conns]) c.close();
    // only our own socket file: a newer overlayd may have put its own there
    if (unlink && this.listenIno !== 0) {
      try {
        if (statSync(this.ctrlPath).ino === this.listenIno) unlinkSync(this.ctrlPath);
      } catch { /* gone */ }
    }
    this.listenIno = 0;
  }

  private ctrlMessage(conn: CtrlConn, m: CtrlMsg, fds: number[]): void {
    for (const f of fds) native().closeFd(f); // nothing is handed to us here
    if (m.op === 'takeover') {
      const refuse = (error: string): void => {
        conn.send({ op: 'fds', ok: false, error });
        this.log.error(`takeover by pid ${m.pid} refused: ${error}`);
      };
      if (this.stopping || this.handingOver || !this.held) return refuse('this overlayd is stopping');
      if (this.takeoverConn !== undefined) return refuse('another takeover is under way');
      const asked = (m.devs ?? [m.dev]).join('+');
      if (asked !== this.dev || m.port !== this.cfg.netConf.backend.port) return refuse(`this overlayd runs ${this.dev} on UDP port ${this.cfg.netConf.backend.port}, not ${asked} on ${m.port}`);
      const h = this.held;
      const reply: CtrlMsg = {
        op: 'fds', ok: true, pid: process.pid, version: version(), dev: h.devs[0]!.name, port: this.cfg.netConf.backend.port,
        offload: (this.cfg.offload ?? DEFAULT_OFFLOAD) === 'auto', devs: h.devs.map((d) => d.name), socks: h.socks.length,
      };
      if (h.httpAddr !== undefined) reply.http = h.httpAddr;
      if (!conn.send(reply, heldFds(h))) return;
      this.takeoverConn = conn;
      this.log.info(`takeover: overlayd ${m.version} (pid ${m.pid}) has our descriptors; forwarding until it forwards`);
    } else if (m.op === 'forwarding' && conn === this.takeoverConn) {
      void this.handOver(conn);
    } else if (m.op === 'abort' && conn === this.takeoverConn) {
      this.takeoverConn = undefined;
      this.log.error(`takeover abandoned by the new overlayd (${m.error}); carrying on`);
    }
  }

  private ctrlClosed(conn: CtrlConn): void {
    this.conns.delete(conn);
    if (conn === this.takeoverConn && !this.handingOver) {
      this.takeoverConn = undefined;
      this.log.error('takeover abandoned (the new overlayd went away); carrying on');
    }
  }

  /** The new overlayd forwards: stop our packet process without removing anything, then exit. */
  private async handOver(conn: CtrlConn): Promise<void> {
    this.handingOver = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    void this.dropStandby();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.send({ t: 'handover' } satisfies ParentMsg);
      await gone;
      clearTimeout(t);
    }
    closeHeld(this.held);
    this.held = undefined;
    conn.send({ op: 'done' });
    this.log.info(`handed ${this.dev} over; exiting`);
    this.exit(0, false);
  }
}

/** The new side of a takeover: connect, ask for the descriptors of `devs`, check them. Throws ConfigError. */
async function requestTakeover(path: string, cfg: DaemonConfig, devs: string[]): Promise<{ conn: CtrlConn; held: Held; oldPid: number; oldVersion: string }> {
  const n = native();
  let fd: number;
  try {
    fd = n.unixConnect(path);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'error';
    throw new ConfigError(`--takeover: no overlayd listens on ${path} (${code === 'ENOENT' || code === 'ECONNREFUSED' ? `${code}: is one running, under the supervisor?` : osMessage(e)})`);
  }
  const conn = new CtrlConn(fd);
  conn.send({ op: 'takeover', pid: process.pid, version: version(), dev: devs[0]!, port: cfg.netConf.backend.port, devs });
  let r: { msg: CtrlMsg; fds: number[] } | undefined;
  try {
    r = await conn.next(TAKEOVER_TIMEOUT_MS);
  } catch (e) {
    conn.close();
    throw new ConfigError(`--takeover: ${path}: ${osMessage(e)}`);
  }
  if (r === undefined || r.msg.op !== 'fds') {
    conn.close();
    throw new ConfigError(`--takeover: ${path}: the running overlayd closed the connection`);
  }
  const m = r.msg;
  if (!m.ok) {
    conn.close();
    throw new ConfigError(`--takeover: refused: ${m.error}`);
  }
  const names = m.devs ?? [m.dev];
  const nSocks = m.socks ?? 1;
  const want = names.length + nSocks + (m.http !== undefined ? 1 : 0);
  if (r.fds.length !== want || names.join('+') !== devs.join('+')) {
    for (const f of r.fds) n.closeFd(f);
    conn.send({ op: 'abort', error: 'not the descriptors asked for' });
    conn.close();
    throw new ConfigError(r.fds.length === 0 ? '--takeover: the running overlayd sent no descriptors' : `--takeover: the running overlayd sent ${r.fds.length} descriptors for ${names.join(', ')}; we run ${devs.join(', ')}`);
  }
  const held: Held = { devs: names.map((name, i) => ({ name, fd: r!.fds[i]! })), socks: r.fds.slice(names.length, names.length + nSocks) };
  const http = m.http !== undefined ? r.fds[names.length + nSocks] : undefined;
  if (http !== undefined) {
    held.http = http;
    held.httpAddr = m.http;
  }
  // the healthz socket: the old one's when it is ours too, else our own
  const wantHttp = cfg.healthz ? `${cfg.healthz.ip}:${cfg.healthz.port}` : undefined;
  if (held.httpAddr !== wantHttp) {
    if (held.http !== undefined) n.closeFd(held.http);
    delete held.http;
    delete held.httpAddr;
    if (cfg.healthz) {
      try {
        held.http = n.tcpListen(cfg.healthz.ip, cfg.healthz.port);
        held.httpAddr = wantHttp;
      } catch (e) {
        closeHeld(held);
        conn.send({ op: 'abort', error: 'healthz address in use' });
        conn.close();
        const { httpListenError } = await import('./metrics.js');
        throw httpListenError(cfg.healthz.ip, cfg.healthz.port, e as NodeJS.ErrnoException);
      }
    }
  }
  return { conn, held, oldPid: m.pid, oldVersion: m.version };
}

/**
 * Run overlayd under the supervisor (see the module comment). Resolves with an exit status when
 * it could not start (the error was printed), undefined while it runs, or 'single' when the
 * configuration has nothing to hold (host-gw): the caller runs the daemon itself.
 */
export async function runSupervisor(o: CliOptions, argv: string[], log: Logger = stderrLogger): Promise<number | undefined | 'single'> {
  let cfg: DaemonConfig;
  let held: Held | undefined;
  let takeover: Awaited<ReturnType<typeof requestTakeover>> | undefined;
  let dev: string;
  let ctrlPath: string;
  let adopt = false;
  try {
    if (o.etcd) {
      // the packet process holds the lease (it finds ours again); here only the network config is needed
      const r = await resolveEtcdConfig(o, { log });
      r.manager.close();
      cfg = r.cfg;
    } else {
      cfg = resolveConfig(o);
      // the packet process would refuse it only after the device is opened here
      const refused = ipv6Refusal(cfg.netConf, defaultBackendFactory, o.netConf ?? 'net-conf');
      if (refused !== undefined) throw new ConfigError(refused);
    }
    // host-gw has no device and no socket to hold: one process
    if (cfg.netConf.backend.type === 'host-gw') {
      if (o.takeover) throw new ConfigError('--takeover: the host-gw backend has no device or socket to take over');
      return 'single';
    }
    const names = devicesOf(cfg).map((d) => d.name);
    dev = names.join('+');
    ctrlPath = o.controlSocket ?? defaultControlSocket(names[0]!);
    // a device in the way (not ours, or ours held by a running overlayd): refused here, nothing touched
    adopt = (await preflight(cfg, o.takeover === true))?.adopted === true || o.takeover === true;
    if (o.takeover) {
      takeover = await requestTakeover(ctrlPath, cfg, names);
      held = takeover.held;
    } else {
      held = await openHeld(cfg);
      for (const name of names) {
        try {
          await Rtnl.shared().setLink(name, { txqlen: DEVICE_TXQUEUELEN });
        } catch (e) {
          log.error(`${name}: txqueuelen ${DEVICE_TXQUEUELEN}: ${osMessage(e)} (the kernel's default stays)`);
        }
      }
    }
  } catch (e) {
    closeHeld(held);
    process.stderr.write(`overlayd: error: ${e instanceof ConfigError ? e.message : osMessage(e).split('\n')[0]}\n`);
    return 2;
  }
  const sup = new Supervisor(cfg, dev, held, argv, ctrlPath, log, adopt);
  process.on('SIGTERM', () => sup.stop('SIGTERM'));
  process.on('SIGINT', () => sup.stop('SIGINT'));
  process.on('SIGHUP', () => sup.hup());
  try {
    await sup.startFirst(takeEarly());
  } catch (code) {
    if (takeover) {
      takeover.conn.send({ op: 'abort', error: 'its packet process failed to start' });
      takeover.conn.close();
    }
    sup.exit(typeof code === 'number' ? code : 1);
    return undefined;
  }
  if (takeover) {
    const t = takeover;
    t.conn.send({ op: 'forwarding' });
    try {
      const r = await t.conn.next(TAKEOVER_TIMEOUT_MS);
      if (r !== undefined && r.msg.op !== 'done') log.error(`takeover: unexpected ${r.msg.op} from pid ${t.oldPid}`);
    } catch (e) {
      log.error(`takeover: pid ${t.oldPid} did not confirm its exit: ${osMessage(e)}`);
    }
    t.conn.close();
    log.info(`took ${dev} over from overlayd ${t.oldVersion} (pid ${t.oldPid})`);
  }
  sup.listen();
  log.info(`running (supervisor; packet process forwarding on ${dev}; control socket ${ctrlPath})`);
  try {
    if (sdNotify(`READY=1\nSTATUS=forwarding (${cfg.netConf.backend.type}, subnet ${cfg.subnet})\nMAINPID=${process.pid}`)) log.info('told systemd we are ready (READY=1 to $NOTIFY_SOCKET)');
  } catch (e) {
    log.error(`sd_notify to ${process.env.NOTIFY_SOCKET}: ${osMessage(e)}`);
  }
  return undefined;
}
