/**
 * The first packet process, started before overlayd loads the rest of itself (issue #14: the
 * restart of a whole daemon). A Node process takes about 50 ms to boot and 50 ms more to load
 * overlayd; the supervisor and its packet process each pay that, so one after the other a restart
 * spent 0.3 s before forwarding. main.ts calls {@link spawnEarly} first thing, so the packet process
 * boots and loads while the supervisor loads, reads the configuration and opens the device: it
 * waits, loaded, on a Unix socket for the descriptors (SCM_RIGHTS, supervisor.ts's activation
 * message). When no supervisor runs after all (--no-supervisor in a file of flags, host-gw, a
 * configuration error) the supervisor side kills it ({@link dropEarly}); it has touched nothing,
 * and says nothing.
 *
 * Only node:child_process and the addon are loaded here, nothing of overlayd's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unlinkSync } from 'node:fs';
import { native } from '../tun/native.js';

/** Environment variable that makes an overlayd process a packet process (JSON: supervisor.ts's PacketEnv). */
export const PACKET_ENV = 'OVERLAYD_PACKET_PROCESS';

/**
 * Descriptor numbers in a packet process (spawn stdio: 0-2 stdio, 3 the IPC channel): the held
 * descriptors from `first` on (devices, sockets, healthz: supervisor.ts), or an early one's
 * control socket at `ctrl`.
 */
export const CHILD_FD = { first: 4, ctrl: 7 } as const;

/** A packet process started early, and the supervisor's end of its control socket. */
export interface EarlyChild {
  child: ChildProcess;
  /** SOCK_SEQPACKET, connected to the child's CHILD_FD.ctrl. */
  ctrl: number;
}

let early: EarlyChild | undefined;

/** The spawn arguments of a packet process: this node, its flags, this script, `argv`. */
export function packetSpawnArgs(argv: string[]): string[] {
  return [...process.execArgv, process.argv[1]!, ...argv];
}

/** Flags that never run a supervisor (checked again, properly, once the command line is parsed). */
const NEVER = new Set(['--help', '-h', '--version', '-v', '--no-supervisor']);

/** A connected pair of SOCK_SEQPACKET Unix sockets (the addon has listen/connect/accept). */
function seqpacketPair(): [number, number] {
  const n = native();
  const path = join(tmpdir(), `overlayd-early-${process.pid}-${Date.now()}.sock`);
  const l = n.unixListen(path);
  try {
    const a = n.unixConnect(path);
    const b = n.unixAccept(l);
    if (b < 0) {
      n.closeFd(a);
      throw new Error('no connection to accept');
    }
    return [a, b];
  } finally {
    n.closeFd(l);
    try { unlinkSync(path); } catch { /* gone */ }
  }
}

/**
 * Start the first packet process now when this command line may run the supervisor (see the
 * module comment). No-op in a packet process, for --help/--version/--no-supervisor, and when
 * anything fails (the supervisor then starts its packet process the usual way).
 */
export function spawnEarly(argv: string[], env: NodeJS.ProcessEnv = process.env): void {
  if (env[PACKET_ENV] !== undefined || argv.some((a) => NEVER.has(a) || a.startsWith('--no-supervisor='))) return;
  const ns = (env.FLANNELD_NO_SUPERVISOR ?? '').toLowerCase();
  if (ns === 'true' || ns === '1') return;
  let pair: [number, number];
  try {
    pair = seqpacketPair();
  } catch {
    return;
  }
  const n = native();
  const stdio: (number | 'ignore' | 'inherit' | 'ipc')[] = ['ignore', 'inherit', 'inherit', 'ipc', 'ignore', 'ignore', 'ignore', pair[1]];
  const childEnv: NodeJS.ProcessEnv = { ...env, [PACKET_ENV]: JSON.stringify({ ctrl: CHILD_FD.ctrl }) };
  delete childEnv.NOTIFY_SOCKET; // systemd hears from the supervisor, its main process
  try {
    const child = spawn(process.execPath, packetSpawnArgs(argv), { stdio, env: childEnv });
    child.on('error', () => undefined); // reported by the supervisor when it uses it
    early = { child, ctrl: pair[0] };
  } catch {
    n.closeFd(pair[0]);
  } finally {
    n.closeFd(pair[1]);
  }
}

/** The early packet process, for the supervisor to use (once). */
export function takeEarly(): EarlyChild | undefined {
  const e = early;
  early = undefined;
  return e;
}

/** Stop the early packet process if nobody took it (it has touched nothing). */
export function dropEarly(): void {
  const e = takeEarly();
  if (!e) return;
  e.child.kill('SIGKILL');
  native().closeFd(e.ctrl);
}
