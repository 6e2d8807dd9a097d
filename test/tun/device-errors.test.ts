/** Device error reporting (src/tun/device.ts) over a fake addon: read errors become counters by errno name plus listeners; wrapped errors keep their cause. */
import { describe, expect, it, vi } from 'vitest';

/** The fake addon's state: the receive callback the device installed, and what tunOpen should do. */
const fake = vi.hoisted(() => ({ cb: null as ((n: number) => void) | null, openError: null as Error | null }));

vi.mock('../../src/tun/native.js', async (orig) => {
  const real = await orig<typeof import('../../src/tun/native.js')>();
  const sysErr = (code: string, errno: number, syscall: string, msg: string): Error => Object.assign(new Error(msg), { code, errno: -errno, syscall });
  class BatchIo {
    setRxSlots(): void { /* slots are not touched */ }
    start(cb: (n: number) => void): void { fake.cb = cb; }
    stop(): void { /* nothing */ }
    read(): number { throw sysErr('EIO', 5, 'read', 'read: Input/output error'); }
    write(): number { return 0; }
    ref(): void { /* nothing */ }
    unref(): void { /* nothing */ }
    close(): void { /* nothing */ }
  }
  const binding = {
    BatchIo,
    tunOpen: (name: string) => {
      if (fake.openError) throw fake.openError;
      return { fd: 1000, name: name || 'tun9', ifindex: 9 };
    },
    closeFd: () => undefined,
  };
  return { ...real, native: () => binding };
});

const { TunDevice, OsError } = await import('../../src/tun/index.js');

describe('device errors', () => {
  it('read errors are counted by errno name and reported to listeners as OsErrors', () => {
    const dev = TunDevice.open({ name: 'fake0' });
    const seen: string[] = [];
    const off = dev.onReadError((e) => { expect(e).toBeInstanceOf(OsError); seen.push(`${e.code} ${e.message}`); });
    dev.onReadError(() => { throw new Error('listener bug'); });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    dev.onBatch(() => undefined);
    fake.cb!(-5);
    fake.cb!(-5);
    fake.cb!(-14);
    expect(dev.readErrorCounts).toEqual({ EIO: 2, EFAULT: 1 });
    expect(dev.readErrorTotal).toBe(3);
    expect(seen).toEqual(['EIO read fake0: EIO', 'EIO read fake0: EIO', 'EFAULT read fake0: EFAULT']);
    expect(warn).toHaveBeenCalledTimes(3);
    off();
    fake.cb!(-5);
    expect(seen).toHaveLength(3);
    expect(dev.readErrorCounts.EIO).toBe(3);
    // A synchronous read error is thrown as an OsError wrapping the native one, and counted.
    let err: unknown;
    try { dev.readBatch(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(OsError);
    expect(err).toMatchObject({ code: 'EIO', errno: -5, cause: expect.objectContaining({ syscall: 'read' }) });
    expect(dev.readErrorCounts.EIO).toBe(4);
    warn.mockRestore();
    dev.close();
  });

  it('open failures are OsErrors with errno code, CAP_NET_ADMIN hint and the native error as cause', () => {
    const native = Object.assign(new Error('TUNSETIFF odnp0: Operation not permitted (needs CAP_NET_ADMIN)'), { code: 'EPERM', errno: -1, syscall: 'TUNSETIFF odnp0' });
    fake.openError = native;
    try {
      let err: unknown;
      try { TunDevice.open({ name: 'odnp0' }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(OsError);
      expect(err).toMatchObject({ code: 'EPERM', syscall: 'TUNSETIFF odnp0', message: 'TUNSETIFF odnp0: EPERM (needs CAP_NET_ADMIN)' });
      expect((err as Error).cause).toBe(native);
      // A non-errno native error keeps its own text.
      fake.openError = Object.assign(new Error("interface name 'x' is longer than 15 bytes"), { code: 'EINVAL' });
      expect(() => TunDevice.open({ name: 'x' })).toThrow(/EINVAL: interface name 'x' is longer than 15 bytes/);
    } finally {
      fake.openError = null;
    }
  });
});
