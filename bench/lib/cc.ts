/** The benchmark's small C tools (bench/floor, bench/lat): compile once per run, wait for "ready". */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

/**
 * Compile the C file `source` into `dir` (`cc -O2`; skipped while the binary is newer
 * than the source) and return the binary's path; throws with the compiler's message.
 */
export function compileC(source: string, dir: string): string {
  const bin = join(dir, basename(source, '.c'));
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(source).mtimeMs) return bin;
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, source], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`cc ${basename(source)} failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim().slice(0, 300)}`);
  }
  return bin;
}

/** Wait until `child` prints "ready" on stdout, or exits, or `ms` pass (`name` labels the errors). */
export function waitReady(child: ChildProcess, name: string, ms: number): Promise<void> {
  return new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`${name}: not ready after ${ms} ms: ${out.trim()}`)), ms);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) { clearTimeout(timer); ok(); }
    });
    child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    child.once('exit', (code) => { clearTimeout(timer); fail(new Error(`${name} exited ${code}: ${out.trim()}`)); });
  });
}
