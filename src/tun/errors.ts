/** Errors of src/tun: every syscall/netlink failure carries the errno name in `code`. */
import { constants } from 'node:os';

const names = new Map<number, string>();
for (const [k, v] of Object.entries(constants.errno)) if (!names.has(v)) names.set(v, k);

/** errno number (positive) to its name, e.g. 1 -> 'EPERM'. Unknown numbers give 'E<n>'. */
export function errnoName(errno: number): string {
  return names.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** An operating-system error: `code` is the errno name ('EPERM', 'EEXIST'...), `errno` is negative (Node convention, as in the addon's errors). */
export class OsError extends Error {
  /** errno name, e.g. 'EPERM'. */
  readonly code: string;
  /** Negative errno number, e.g. -1 for EPERM (as Node's system errors). */
  readonly errno: number;
  /** The operation that failed, e.g. 'RTM_NEWROUTE 198.19.1.0/24'. */
  readonly syscall: string;
  /**
   * @param errno errno number (sign ignored).
   * @param syscall the operation that failed.
   * @param detail extra text (e.g. the kernel's extended ack message).
   * @param options `cause`: the error this one wraps (a native error, a kernel reply...).
   */
  constructor(errno: number, syscall: string, detail?: string, options?: { cause?: unknown }) {
    const code = errnoName(errno);
    let hint = '';
    if (code === 'EPERM' || code === 'EACCES') hint = ' (needs CAP_NET_ADMIN)';
    else if (code === 'EBUSY') hint = ' (device name in use)';
    super(`${syscall}: ${code}${detail ? `: ${detail}` : ''}${hint}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'OsError';
    this.code = code;
    this.errno = -Math.abs(errno);
    this.syscall = syscall;
  }
}

/** The errno number (positive) of an error thrown by the addon or Node (`errno` field, or `code` name); EIO when unknown. */
export function errnoOf(e: unknown): number {
  const o = e as { errno?: unknown; code?: unknown } | null;
  if (o && typeof o.errno === 'number' && o.errno !== 0) return Math.abs(o.errno);
  if (o && typeof o.code === 'string') {
    const n = (constants.errno as Record<string, number>)[o.code];
    if (n) return n;
  }
  return 5;
}

/** Wrap `e` (a native or other error) as an OsError for `syscall`, keeping it as `cause`; OsErrors pass through. */
export function wrapOsError(e: unknown, syscall: string, detail?: string): OsError {
  if (e instanceof OsError && detail === undefined) return e;
  // Errno-style native errors say only strerror (now in `code`); others carry their own text.
  const o = e as { syscall?: unknown; message?: unknown } | null;
  const own = o && o.syscall === undefined && typeof o.message === 'string' ? o.message : undefined;
  return new OsError(errnoOf(e), syscall, detail ?? own, { cause: e });
}
