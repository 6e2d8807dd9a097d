/**
 * The CLI driver: parse, validate, start, wait for signals, stop.
 */
import { HELP, parseCli, version } from './cli.js';
import { ConfigError } from './config.js';
import { Overlayd, factoryFor, resolveConfig, resolveEtcdConfig, stderrLogger, type DaemonConfig } from './daemon.js';
import type { EtcdSubnetManager } from '../subnet/etcd-manager.js';
import { sdNotify } from './sdnotify.js';

/** sd_notify when started by systemd with Type=notify; a failure is logged, never fatal. */
function notify(state: string): boolean {
  try {
    return sdNotify(state);
  } catch (e) {
    stderrLogger.error(`sd_notify to ${process.env.NOTIFY_SOCKET}: ${(e as Error).message}`);
    return false;
  }
}
import { packetProcess, runSupervisor, supervised } from './supervisor.js';
import { dropEarly } from './early.js';

/** Exit status for bad configuration. */
export const EXIT_CONFIG = 2;

/**
 * Run overlayd with `argv`. Resolves with an exit status for the caller to exit with,
 * or `undefined` while the daemon keeps running (it exits by itself on SIGTERM/SIGINT).
 */
export async function runCli(argv: string[]): Promise<number | undefined> {
  let daemon: Overlayd;
  let pp: ReturnType<typeof packetProcess>;
  try {
    // the supervisor (src/overlayd/supervisor.ts) holds the descriptors; a packet process runs the daemon on them
    pp = packetProcess();
    await pp?.activated(); // a standby (or one started early) waits here, loaded, until its supervisor needs it
    const cmd = parseCli(argv, process.env);
    if (cmd.kind === 'help') {
      process.stdout.write(HELP);
      return 0;
    }
    if (cmd.kind === 'version') {
      process.stdout.write(`overlayd ${version()}\n`);
      return 0;
    }
    if (pp === undefined && supervised(cmd.options)) {
      const r = await runSupervisor(cmd.options, argv);
      if (r !== 'single') return r;
    }
    dropEarly(); // one process after all: the packet process main.ts started early is not needed
    if (pp === undefined && cmd.options.takeover) throw new ConfigError('--takeover needs the supervisor: --transport mmsg, no --backend-module');
    const factory = await factoryFor(cmd.options);
    let cfg: DaemonConfig;
    let subnets: EtcdSubnetManager | undefined;
    if (cmd.options.etcd) ({ cfg, manager: subnets } = await resolveEtcdConfig(cmd.options, { factory }));
    else cfg = resolveConfig(cmd.options);
    daemon = new Overlayd(cfg, { factory, ...(subnets ? { subnets } : {}), ...(pp ? await pp.daemonOptions(cfg) : {}) });
    await daemon.start();
    pp?.started();
  } catch (e) {
    dropEarly();
    const msg = e instanceof ConfigError ? e.message : `${(e as Error).message ?? String(e)}`.split('\n')[0];
    process.stderr.write(`overlayd: error: ${msg}\n`);
    return EXIT_CONFIG;
  }

  // A daemon runs until told to stop: signal listeners do not keep Node's event loop alive,
  // and a backend may hold no ref'd handle (or unref its device and socket), so hold the
  // loop open explicitly. Without this, overlayd could exit silently after 'running' and
  // leave its device behind.
  const keepAlive = setInterval(() => {}, 1 << 30);

  let stopping = false;
  const stop = (sig: string, code = 0): void => {
    if (stopping) {
      stderrLogger.error(`${sig} again while stopping; exiting now`);
      process.exit(1);
    }
    stopping = true;
    clearInterval(keepAlive);
    stderrLogger.info(`${sig}: stopping`);
    notify('STOPPING=1');
    daemon.stop().then(
      () => {
        stderrLogger.info(daemon.cfg.keepDeviceOnExit === true ? 'stopped; kept the device for the next start' : 'stopped; removed what we created');
        process.exit(code);
      },
      (e: Error) => {
        stderrLogger.error(`stop failed: ${e.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (pp === undefined) process.on('SIGINT', () => stop('SIGINT')); // a packet process ignores it: its supervisor stops it
  process.on('SIGHUP', () => {
    stderrLogger.info('SIGHUP: reloading peers');
    daemon.reloadPeers('SIGHUP');
  });
  process.on('uncaughtException', (e) => {
    stderrLogger.error(`uncaught: ${e.stack ?? e.message}`);
    // a packet process just dies: its supervisor starts the next one on the same device (nothing to remove)
    if (pp !== undefined) process.exit(1);
    if (!stopping) stop('uncaught exception', 1);
  });
  stderrLogger.info(`forwarding ${Math.round(performance.now())} ms after the process started`);
  stderrLogger.info('running');
  if (notify(`READY=1\nSTATUS=forwarding (${daemon.cfg.netConf.backend.type}, subnet ${daemon.cfg.subnet})\nMAINPID=${process.pid}`)) stderrLogger.info('told systemd we are ready (READY=1 to $NOTIFY_SOCKET)');
  return undefined;
}
