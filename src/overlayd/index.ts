/** Public exports of src/overlayd (re-exported by src/index.ts). */
export * from './config.js';
export * from './iface.js';
export * from './pcap.js';
export * from './metrics.js';
export * from './backend-factory.js';
export { HELP, parseCli, version, DEFAULT_SUBNET_FILE, DEFAULT_HEALTHZ_IP, type CliOptions, type CliCommand } from './cli.js';
export { Overlayd, resolveConfig, hasNetAdmin, checkUdpPortFree, stderrLogger, type DaemonConfig, type Logger, type OverlaydOptions } from './daemon.js';
