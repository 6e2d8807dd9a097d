/**
 * Loader and typed view of the overlay_native addon. The addon only performs syscalls; see
 * native/addon.cc for the descriptor layout. node-gyp-build picks the binary: a local build
 * (build/Release, build/Debug: the repository, or an install that compiled it from source)
 * first, else the prebuilt one shipped in the package (prebuilds/<platform>-<arch>/, made by
 * prebuildify when the package is packed). Loaded lazily so that importing the package never
 * fails on machines without the addon.
 */
import { createRequire } from 'node:module';
import { installChecksum, RANGE_STRIDE } from '../codec/checksum.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Stride (in uint32 elements) of one slot's descriptor: off, len, family, port, addr, flags, seg, parts. */
export const DESC_STRIDE = 8;
/**
 * Descriptor field offsets inside one stride. D_FLAGS: on receive 1 = truncated (MSG_TRUNC);
 * on UDP send the addon writes back a TX_* status (low byte) and the errno (bits 8+).
 * D_SEG: UDP segment size (send: UDP_SEGMENT/GSO when > 0; receive: UDP_GRO gso_size, 0 = one datagram).
 */
export const D_OFF = 0, D_LEN = 1, D_FAMILY = 2, D_PORT = 3, D_ADDR = 4, D_FLAGS = 5, D_SEG = 6;
/**
 * D_PARTS (UDP send): entries of this message, when above 1: a GSO message gathering its
 * datagrams from this entry and the next D_PARTS - 1 (one iovec each; only their off/len count).
 */
export const D_PARTS = 7;

/** Per-message UDP send status in D_FLAGS (low byte) after `write`. */
export const TX_NOT_SENT = 0, TX_SENT = 1, TX_DROPPED = 2, TX_GSO_REJECTED = 3;

/** TUNSETOFFLOAD feature bits (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08, TUN_F_USO4 = 0x20, TUN_F_USO6 = 0x40;

/**
 * Native batch I/O object bound to one fd (mode 0: TUN/TAP, mode 1: UDP socket).
 * Mode 0 with `inlineHdr`: the `extra`-byte virtio_net_hdr sits in the slot at [off - extra, off)
 * (read fills it, write sends it); without it the header is discarded on read / zero on write.
 */
export interface NativeBatchIo {
  setRxSlots(bufs: Buffer[], desc: Uint32Array, addr6?: Uint8Array | null): void;
  start(cb: (count: number) => void): void;
  stop(): void;
  read(): number;
  write(bufs: Buffer[], desc: Uint32Array, addr6: Uint8Array | null, count: number): number;
  ref(): void;
  unref(): void;
  close(): void;
  /** Timing mode: per batch, fill `stamps` (see {@link BatchStamps}); null turns it off. */
  setStamps(stamps: Float64Array | null): void;
}

/** Readiness watcher of one fd on the event loop (uv_poll). Never reads or closes the fd. */
export interface NativeFdWatch {
  /** Call `cb(0)` whenever the fd is readable (`cb(errno)` on a poll error) until stop(). */
  start(cb: (err: number) => void): void;
  stop(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/** The addon's exports. */
export interface NativeBinding {
  BatchIo: new (fd: number, mode: 0 | 1, extra: number, inlineHdr?: boolean) => NativeBatchIo;
  tunOpen(name: string, tap: boolean, multiQueue: boolean, vnetHdr: boolean, persist: boolean): { fd: number; name: string; ifindex: number };
  tunSetPersist(fd: number, on: boolean): void;
  closeFd(fd: number): void;
  /** TUNSETVNETHDRSZ; 0 or -errno. */
  tunSetVnetHdrSz(fd: number, size: number): number;
  /** TUNSETOFFLOAD with TUN_F_* bits; 0 or -errno. */
  tunSetOffload(fd: number, flags: number): number;
  /** getsockopt(UDP_SEGMENT): 0 when UDP GSO is known to the kernel, else -errno. */
  udpGsoProbe(fd: number): number;
  /** setsockopt(UDP_GRO); 0 or -errno. */
  udpSetGro(fd: number, on: boolean): number;
  /** setsockopt(SO_NO_CHECK); 0 or -errno. */
  udpSetNoCheck(fd: number, on: boolean): number;
  udpSetPmtuDisc(fd: number, family: 4 | 6, mode: number): number;
  /** setsockopt(SO_TIMESTAMPNS); 0 or -errno. */
  udpSetTimestamp(fd: number, on: boolean): number;
  /** `f64[i]` = CLOCK_MONOTONIC microseconds (the clock of the timing stamps). */
  stampNow(f64: Float64Array, i: number): void;
  /** Folded ones-complement sum of buf[off, off+len) plus initial; -1 when out of range. */
  csumOnes(buf: Uint8Array, off: number, len: number, initial: number): number;
  /** Copy src[so, so+len) to dst[dof..) and return its folded sum plus initial; -1 when out of range. */
  csumCopy(src: Uint8Array, so: number, dst: Uint8Array, dof: number, len: number, initial: number): number;
  /** Sum each range of a range list (src/codec/checksum.ts RANGE_STRIDE); n, or -1 when one is out of range. */
  csumOnesRanges(buf: Uint8Array, desc: Int32Array, n: number): number;
  /** Copy and sum each range of a range list; n, or -1 when one is out of range. */
  csumCopyRanges(src: Uint8Array, dst: Uint8Array, desc: Int32Array, n: number): number;
  /** Ints per range in a range list (must equal src/codec's RANGE_STRIDE). */
  CSUM_RANGE_STRIDE: number;
  /** Descriptor stride the addon was built with (must equal DESC_STRIDE). */
  DESC_STRIDE: number;
  udpOpen(family: 4 | 6, address: string, port: number, reusePort: boolean, v6only?: boolean): number;
  udpConnect(fd: number, family: 4 | 6, address: string, port: number): void;
  sockPort(fd: number): number;
  setSockBuf(fd: number, rcvbuf: number, sndbuf: number): [number, number];
  /** A raw netlink socket of `protocol`, subscribed to the RTMGRP_* bitmask `groups` (default none). */
  nlOpen(protocol: number, groups?: number): number;
  nlSend(fd: number, buf: Buffer, len: number): number;
  /** Blocking receive (poll up to timeoutMs); throws ETIMEDOUT. For the synchronous helpers only. */
  nlRecv(fd: number, buf: Buffer, timeoutMs: number): number;
  /** Non-blocking receive: the datagram's full length (> buf.length: truncated), -1 when nothing is queued. */
  nlRecvNow(fd: number, buf: Buffer): number;
  /** sendto() the kernel on a libuv pool thread; `cb(errno, bytes)`, errno 0 on success. */
  nlSendAsync(fd: number, buf: Buffer, len: number, cb: (errno: number, bytes: number) => void): void;
  FdWatch: new (fd: number) => NativeFdWatch;
  /** One datagram to the Unix datagram socket at `path` ('@name': abstract); bytes sent. Absent in addons built before it. */
  unixDgramSend?(path: string, buf: Buffer): number;
  /**
   * Take over a descriptor inherited from another process: checks it is a TUN/TAP queue
   * (TUNGETIFF) or a UDP socket, makes it non-blocking and close-on-exec, and tracks it.
   */
  adoptFd(fd: number, kind: 'tun'): { name: string; ifindex: number; tap: boolean; vnetHdr: boolean; multiQueue: boolean };
  adoptFd(fd: number, kind: 'udp'): { family: 4 | 6; port: number; address: string };
  /** A duplicate of `fd` (close-on-exec, tracked). */
  dupFd(fd: number): number;
  /** Let closeFd close a descriptor the addon did not open. */
  trackFd(fd: number): void;
  /** A non-blocking listening TCP socket (SO_REUSEADDR), served by another process. */
  tcpListen(address: string, port: number): number;
  /** A non-blocking SOCK_SEQPACKET Unix socket listening at `path` (mode 0600). */
  unixListen(path: string): number;
  /** Connect a SOCK_SEQPACKET Unix socket to `path` (then non-blocking). */
  unixConnect(path: string): number;
  /** Accept one connection: its fd, or -1 when none is pending. */
  unixAccept(fd: number): number;
  /** Send one message with `fds` attached (SCM_RIGHTS); returns the bytes sent. */
  unixSend(fd: number, buf: Buffer, fds: number[]): number;
  /** Receive one message: its length (0: closed) and the descriptors it carried; null when nothing is queued. */
  unixRecv(fd: number, buf: Buffer): { len: number; fds: number[]; truncated?: boolean } | null;
}

let binding: NativeBinding | undefined;

/**
 * The package's root: the nearest directory above this module with binding.gyp (the repository
 * for src/tun/, the installed package for dist/tun/; binding.gyp ships in the package).
 */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw Object.assign(new Error('overlay_native addon: package root (binding.gyp) not found above ' + dirname(fileURLToPath(import.meta.url))), { code: 'ENOENT' });
}

/** Path of the addon binary node-gyp-build chooses for this platform (local build first, then prebuilds/). */
export function addonPath(): string {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const gypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  try {
    return gypBuild.resolve(root);
  } catch (e) {
    const first = (e as Error).message.split('\n')[0];
    throw Object.assign(new Error(`overlay_native addon: ${first}. No prebuilt binary fits this machine and none was built: `
      + 'in the repository run `npm run build:native`; in a project, let the package build it from source (needs python3, make, g++): '
      + '`npm install-scripts approve overlay-dataplane && npm rebuild overlay-dataplane` (npm 11; older npm: `npm rebuild overlay-dataplane`)'), { code: 'ENOENT' });
  }
}

/**
 * Timing mode: `f64[i]` = now, in CLOCK_MONOTONIC microseconds, the clock of {@link BatchStamps}
 * (falls back to performance.now() with an addon built before timing existed).
 */
export function stampNow(f64: Float64Array, i: number): void {
  const n = native();
  if (typeof n.stampNow === 'function') n.stampNow(f64, i);
  else f64[i] = performance.now() * 1000;
}

/** The loaded native addon (loads it on first use). */
export function native(): NativeBinding {
  if (!binding) {
    const require = createRequire(import.meta.url);
    const b = require(addonPath()) as NativeBinding;
    if (b.DESC_STRIDE !== DESC_STRIDE) {
      throw Object.assign(new Error(`overlay_native addon is out of date (descriptor stride ${b.DESC_STRIDE}, expected ${DESC_STRIDE}): run \`npm run build:native\` (repository) or reinstall the package to rebuild it`), { code: 'ELIBBAD' });
    }
    binding = b;
    // the codec's checksum primitives, natively for long ranges (see src/codec/checksum.ts)
    installChecksum({
      onesSum: (buf, off, len, initial) => b.csumOnes(buf, off, len, initial),
      copySum: (s, so, d, dof, len, initial) => b.csumCopy(s, so, d, dof, len, initial),
      // an addon built with another range layout is not used for range lists
      onesSumRanges: (buf, desc, n) => b.CSUM_RANGE_STRIDE === RANGE_STRIDE ? b.csumOnesRanges(buf, desc, n) : -1,
      copySumRanges: (s, d, desc, n) => b.CSUM_RANGE_STRIDE === RANGE_STRIDE ? b.csumCopyRanges(s, d, desc, n) : -1,
    });
  }
  return binding;
}
