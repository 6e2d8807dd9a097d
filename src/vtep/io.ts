/**
 * Default device/socket factory: src/tun's TUN/TAP devices and UDP transports.
 */
import { OFFLOAD_SLOT_SIZE, TapDevice, TunDevice, createTransport } from '../tun/index.js';
import type { CreateTransportOptions, DataplaneIo } from './options.js';
import type { TransportOptions } from '../tun/udp.js';

/** Receive batch size of the default devices and transports. */
export const DEFAULT_BATCH = 64;

/**
 * The default DataplaneIo (src/tun): devices opened without link configuration (the backend
 * configures them). `openTun(name, { offload: true })` opens the TUN with IFF_VNET_HDR +
 * TUNSETOFFLOAD (64 KB slots); `createTransport('mmsg', { gro: true })` turns on UDP GRO (GSO
 * sends are on by default there). TAP devices never get offloads; the dgram transport has no
 * GSO/GRO, but with `gro` asked for it receives into 64 KB slots, so a kernel VXLAN peer's
 * unsegmented 64 KB datagrams over veth still arrive whole.
 */
export const defaultIo: DataplaneIo = {
  openTun(name, opts) {
    return TunDevice.open({ name, batch: DEFAULT_BATCH, offload: opts?.offload === true });
  },
  openTap(name) {
    return TapDevice.open({ name, batch: DEFAULT_BATCH });
  },
  createTransport(kind, opts) {
    return createTransport(kind, defaultTransportOptions(kind, opts));
  },
};

/** SO_RCVBUF and SO_SNDBUF the default transports ask for (the kernel doubles them: 8 MiB of accounted memory each). */
export const DEFAULT_SOCKET_BUFFER = 4 << 20;

/** The transport options of {@link defaultIo}. */
export function defaultTransportOptions(kind: 'dgram' | 'mmsg', opts?: CreateTransportOptions): TransportOptions {
  return {
    batch: DEFAULT_BATCH, rcvbuf: DEFAULT_SOCKET_BUFFER, sndbuf: DEFAULT_SOCKET_BUFFER,
    gro: kind === 'mmsg' && opts?.gro === true,
    slotSize: opts?.gro === true ? OFFLOAD_SLOT_SIZE : undefined,
    onGsoFallback: opts?.onGsoFallback,
    ipv6Only: opts?.ipv6Only === true,
  };
}
