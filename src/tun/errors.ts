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
  constructor(errno: number, syscall: string, detail?: string) {
    const code = errnoName(errno);
    let hint = '';
    if (code === 'EPERM' || code === 'EACCES') hint = ' (needs CAP_NET_ADMIN)';
    else if (code === 'EBUSY') hint = ' (device name in use)';
    super(`${syscall}: ${code}${detail ? `: ${detail}` : ''}${hint}`);
    this.name = 'OsError';
    this.code = code;
    this.errno = -Math.abs(errno);
    this.syscall = syscall;
  }
}
