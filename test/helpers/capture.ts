/**
 * tcpdump in a namespace host, for tests that check what went on the wire: start() resolves
 * once tcpdump listens; stop() waits until the capture file stops growing (tcpdump has drained
 * the kernel's capture buffer), stops tcpdump and resolves with the file's path.
 */
import { statSync } from 'node:fs';
import type { NsHost, Testbed } from './netns.js';

/** A running capture (see {@link startCapture}). */
export interface Capture {
  /** Drain (first, up to 10 s, until `done(file)` says the file has what is expected), stop tcpdump, and give the pcap file's path. */
  stop(done?: (file: string) => boolean): Promise<string>;
}

/** Capture on `dev` of `host` into `file` (classic pcap) packets matching `filter`; `snap` bytes each (0: whole). */
export async function startCapture(tb: Testbed, host: NsHost, dev: string, file: string, filter: string, snap = 0): Promise<Capture> {
  const dump = tb.track(host.spawn('tcpdump', ['-i', dev, '-n', '-s', String(snap), '-B', '65536', '--immediate-mode', '-U', '-w', file, filter]));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    dump.stderr!.on('data', (d: Buffer) => { err += d.toString(); if (err.includes('listening on')) resolve(); });
    dump.on('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${err}`)));
  });
  return {
    async stop(done?: (file: string) => boolean): Promise<string> {
      // `done`: wait (up to 10 s) until the file has what the caller expects; tcpdump starved of
      // CPU writes late, and a file merely unchanged for 200 ms missed the last packets under load
      if (done !== undefined) {
        for (let i = 0; i < 50; i++) {
          let ok = false;
          try { ok = done(file); } catch { /* a record still being written */ }
          if (ok) break;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      for (let last = -1, i = 0; i < 50; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const size = statSync(file).size;
        if (size === last) break;
        last = size;
      }
      const exited = new Promise((r) => dump.once('exit', r));
      dump.kill('SIGINT');
      await exited;
      return file;
    },
  };
}
