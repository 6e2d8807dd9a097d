/**
 * Test child: runs one dataplane inside a network namespace.
 *
 *   ip netns exec NS node --import tsx test/vtep/host.ts '<json>'
 *
 * The JSON is {kind: 'udp' | 'vxlan' | 'host-gw', ...constructor options}, or {kind: 'dual', v4: {...}, v6: {...}}
 * (a DualStackBackend of the two). Prints one JSON line
 * per event on stdout: {"event":"ready","lease":...} after start(), then answers
 * commands read as JSON lines on stdin, each echoed with its `id`:
 *   {"id":1,"cmd":"addPeer","lease":{...}}   {"id":2,"cmd":"removePeer","subnet":"..."}
 *   {"id":3,"cmd":"stats"} -> {"id":3,"event":"stats","stats":{...},"rss":N}
 *   {"id":4,"cmd":"gc"}    {"id":5,"cmd":"restart"} (stop, start again)    {"id":6,"cmd":"stop"} (stops and exits)
 * Miss events are printed as {"event":"miss",...}, onLog messages as {"event":"log","message":...}.
 */
import { createInterface } from 'node:readline';
import { DualStackBackend, HostGwBackend, UdpBackend, VxlanBackend, type Backend, type Lease, type MissEvent } from '../../src/vtep/index.js';

type Opts = { kind: 'udp' | 'vxlan' | 'host-gw' | 'dual' } & Record<string, unknown>;

/** The backend `opts` describe; 'dual': a DualStackBackend of `opts.v4` and `opts.v6` (each such options). */
function make(opts: Opts, onLog: (message: string) => void): Backend {
  const { kind, ...rest } = opts;
  if (kind === 'dual') return new DualStackBackend(make(rest.v4 as Opts, onLog), make(rest.v6 as Opts, onLog));
  if (kind === 'host-gw') return new HostGwBackend({ ...(rest as unknown as ConstructorParameters<typeof HostGwBackend>[0]), onLog });
  return kind === 'udp'
    ? new UdpBackend({ ...(rest as unknown as ConstructorParameters<typeof UdpBackend>[0]), onLog })
    : new VxlanBackend({ ...(rest as unknown as ConstructorParameters<typeof VxlanBackend>[0]), onLog, onMiss: (ev: MissEvent) => out({ event: 'miss', ...ev }) });
}

function out(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main(): Promise<void> {
  const opts = JSON.parse(process.argv[2] ?? '{}') as Opts;
  const onLog = (message: string): void => out({ event: 'log', message });
  const backend = make(opts, onLog);
  await backend.start();
  out({ event: 'ready', lease: backend.localLease() });
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    void (async () => {
      let msg: { id?: number; cmd?: string; lease?: Lease; subnet?: string };
      try { msg = JSON.parse(line) as typeof msg; } catch { return; }
      const id = msg.id;
      try {
        switch (msg.cmd) {
          // answer once the peer's kernel route is in (or failed), so a test can ping right away
          case 'addPeer': backend.addPeer(msg.lease!); await backend.settled?.(); out({ id, event: 'ok' }); break;
          case 'removePeer': backend.removePeer(msg.subnet!); await backend.settled?.(); out({ id, event: 'ok' }); break;
          case 'stats': out({ id, event: 'stats', stats: backend.stats(), rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed }); break;
          case 'gc': (globalThis as { gc?: () => void }).gc?.(); out({ id, event: 'ok' }); break;
          case 'restart': await backend.stop(); await new Promise((r) => setTimeout(r, 300)); await backend.start(); out({ id, event: 'ok' }); break;
          case 'stop': await backend.stop(); out({ id, event: 'stopped' }); process.exit(0); break;
          default: out({ id, event: 'error', message: `unknown command ${msg.cmd}` });
        }
      } catch (e) {
        out({ id, event: 'error', message: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
  rl.on('close', () => { void backend.stop().then(() => process.exit(0)); });
}

main().catch((e: unknown) => {
  out({ event: 'fatal', message: e instanceof Error ? e.stack : String(e) });
  process.exit(1);
});
