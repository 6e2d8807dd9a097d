/** Child-process helpers for the benchmark (collect output, time out, wait). */
import type { ChildProcess } from 'node:child_process';

/** Exit status and output of a finished child. */
export interface ChildResult {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  /** Signal that ended it, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when we killed it after `timeoutMs`. */
  timedOut: boolean;
}

/** Collect a child's output until it exits; SIGKILL it after `timeoutMs`. */
export function waitChild(child: ChildProcess, timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      timedOut = true;
      try { child.kill('SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    };
    if (child.exitCode !== null || child.signalCode !== null) done(child.exitCode, child.signalCode);
    else child.once('close', done);
    child.once('error', (e) => { stderr += String(e); });
  });
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until a child exits, at most `ms`; true if it exited. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}
