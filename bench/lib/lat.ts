/**
 * Drives bench/lat/lat.c, the latency section's C tool: request/response (netperf
 * TCP_RR style: one TCP connection, one 1-byte transaction outstanding, blocking
 * send/recv on both sides) and fast pings (ICMP echo on a fixed schedule, without
 * the busy-waiting of iputils ping at short intervals). See the C file's comment.
 * The request/response server runs on the second CPU the process may use, the client
 * on the first, as on two hosts (see LAT_CPU in the C file for why).
 */
import type { ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NsHost } from '../../test/helpers/netns.js';
import { compileC, waitReady } from './cc.js';
import { waitChild } from './exec.js';

const SOURCE = resolve(dirname(fileURLToPath(import.meta.url)), '../lat/lat.c');

/** Percentiles of one run, microseconds. */
export interface Percentiles {
  p50: number;
  p99: number;
  p999: number;
}

/** Outcome of one request/response run. */
export interface RrResult extends Percentiles {
  /** Transactions completed. */
  transactions: number;
  /** Measured seconds, from connect() done to the last reply. */
  seconds: number;
  /** Transactions per second. */
  tps: number;
}

/** Outcome of one fast ping run (percentiles over the replies received). */
export interface FastPingResult extends Percentiles {
  /** Requests sent. */
  sent: number;
  /** Replies received. */
  received: number;
  /** Seconds from the first request to the last. */
  seconds: number;
}

/** Compile lat.c into `dir` (once) and return the binary. */
export function compileLat(dir: string): string {
  return compileC(SOURCE, dir);
}

/** The last line of `out` as a JSON object of numbers, with `keys` required. */
function parseLine<K extends string>(out: string, keys: readonly K[]): Record<K, number> {
  const line = out.trim().split('\n').pop() ?? '';
  let d: Partial<Record<K, unknown>> = {};
  try { d = JSON.parse(line) as Partial<Record<K, unknown>>; } catch { /* reported below */ }
  for (const k of keys) if (typeof d[k] !== 'number') throw new Error(`lat: no "${k}" in "${line.slice(0, 200)}"`);
  return d as Record<K, number>;
}

/** Parse the output of `lat rr`. */
export function parseRr(out: string): RrResult {
  const d = parseLine(out, ['transactions', 'seconds', 'p50', 'p99', 'p999'] as const);
  if (!(d.seconds > 0) || d.transactions < 1) throw new Error('lat rr: no transaction completed');
  return { transactions: d.transactions, seconds: d.seconds, tps: d.transactions / d.seconds, p50: d.p50, p99: d.p99, p999: d.p999 };
}

/** Parse the output of `lat ping`; throws when no reply came. */
export function parseFastPing(out: string): FastPingResult {
  const { sent, received, seconds } = parseLine(out, ['sent', 'received', 'seconds'] as const);
  if (received === 0) throw new Error(`ping: no replies (0/${sent})`);
  return { sent, received, seconds, ...parseLine(out, ['p50', 'p99', 'p999'] as const) };
}

/** Start `lat` in `host` with `args`, pinned to the `cpu`-th allowed CPU when given. */
function spawnLat(host: NsHost, bin: string, args: string[], cpu?: number): ChildProcess {
  return host.spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(cpu === undefined ? {} : { LAT_CPU: String(cpu) }) } });
}

/** Run `lat` in `host` with `args`; its stdout, or an error with its stderr. */
async function run(host: NsHost, bin: string, args: string[], timeoutMs: number, cpu?: number): Promise<string> {
  const r = await waitChild(spawnLat(host, bin, args, cpu), timeoutMs);
  if (r.timedOut) throw new Error(`lat ${args[0]} timed out after ${timeoutMs / 1000} s`);
  if (r.code !== 0) throw new Error(`lat ${args[0]} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 300)}`);
  return r.stdout;
}

/** Start the request/response server bound to `bindIp` in `host`; resolves once it listens. */
export async function startRrServer(host: NsHost, bin: string, bindIp: string, port: number): Promise<ChildProcess> {
  const child = spawnLat(host, bin, ['rr-server', bindIp, String(port)], 1);
  try {
    await waitReady(child, 'lat rr-server', 5000);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return child;
}

/** Request/response from `src` in `host` to the server at `dst`, for `seconds`. */
export async function runRr(host: NsHost, bin: string, src: string, dst: string, port: number, seconds: number): Promise<RrResult> {
  return parseRr(await run(host, bin, ['rr', src, dst, String(port), String(seconds)], (seconds + 15) * 1000, 0));
}

/** `count` pings from `src` in `host` to `dst`, one every `intervalMs`. */
export async function runFastPing(host: NsHost, bin: string, src: string, dst: string, count: number, intervalMs: number): Promise<FastPingResult> {
  const args = ['ping', src, dst, String(count), String(Math.round(intervalMs * 1000))];
  return parseFastPing(await run(host, bin, args, count * intervalMs + 15_000));
}
