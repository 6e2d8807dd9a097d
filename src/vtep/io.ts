/**
 * Default device/socket factory: src/tun's TUN/TAP devices and UDP transports.
 */
import { TapDevice, TunDevice, createTransport } from '../tun/index.js';
import type { DataplaneIo } from './options.js';

/** Receive batch size of the default devices and transports. */
export const DEFAULT_BATCH = 64;

/** The default DataplaneIo (src/tun): devices opened without link configuration (the backend configures them). */
export const defaultIo: DataplaneIo = {
  openTun(name) {
    return TunDevice.open({ name, batch: DEFAULT_BATCH });
  },
  openTap(name) {
    return TapDevice.open({ name, batch: DEFAULT_BATCH });
  },
  createTransport(kind) {
    return createTransport(kind, { batch: DEFAULT_BATCH, rcvbuf: 4 << 20, sndbuf: 4 << 20 });
  },
};
