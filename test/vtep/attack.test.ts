/**
 * Under attack: while a 50 MB TCP transfer crosses our L3 VTEP (kernel vxlan on the
 * other side), the VTEP's socket is flooded with garbage, truncated, wrong-VNI,
 * bad-flag, inner-spoofed datagrams from the known peer and with datagrams from an
 * unknown (spoofed) source address. The transfer must complete intact, the counters
 * must show the drops by reason, and the dataplane's memory must stay flat.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { floodVtep, oursAndKernel, tcpTransfer, type HostProc } from './harness.js';

const MB = 1024 * 1024;
const flood = (tb: Testbed, h: NsHost, bind: string, ms: number): Promise<number> => floodVtep(tb, h, '198.18.0.1', bind, ms);

describe.runIf(requireNetns())('L3 VTEP under attack', () => {
  const tb = new Testbed('vxa');
  let a: NsHost, b: NsHost, ours: HostProc;
  beforeAll(async () => {
    ({ a, b, ours } = await oursAndKernel(tb, { transport: (process.env.VTEP_TRANSPORT as string | undefined) ?? 'mmsg' }));
    b.ip('addr', 'add', '198.18.0.99/24', 'dev', 'u0'); // the attacker's (unknown) source address
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });

  it('completes a 50 MB transfer intact while flooded; drops counted by reason; RSS flat', async () => {
    // warm up (JIT, socket buffers) and take the baseline
    const warm = await tcpTransfer(tb, a, '198.19.1.0', b, 5 * MB, 5010);
    expect(warm.server.sha256).toBe(warm.client.sha256);
    await ours.cmd({ cmd: 'gc' });
    const before = await ours.stats();
    const xfer = tcpTransfer(tb, a, '198.19.1.0', b, 50 * MB, 5011, 180_000);
    const floods = Promise.all([flood(tb, b, '198.18.0.2', 8000), flood(tb, b, '198.18.0.99', 8000)]);
    const [r, sent] = await Promise.all([xfer, floods]);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    await ours.cmd({ cmd: 'gc' });
    const after = await ours.stats();
    const d = after.stats.drops;
    console.log(`attack: flood sent ${sent.join('+')} datagrams; transfer ${r.ms} ms; drops ${JSON.stringify(d)}; rss ${(before.rss / MB).toFixed(1)} -> ${(after.rss / MB).toFixed(1)} MB, heap ${(before.heap / MB).toFixed(1)} -> ${(after.heap / MB).toFixed(1)} MB`);
    for (const reason of ['rx_unknown_peer', 'rx_truncated', 'rx_bad_vxlan_flags', 'rx_wrong_vni', 'rx_spoofed_inner_source']) {
      expect(d[reason] ?? 0, reason).toBeGreaterThan(0);
    }
    expect(after.rss - before.rss).toBeLessThan(40 * MB);
    expect(after.heap - before.heap).toBeLessThan(10 * MB);
  });
});
