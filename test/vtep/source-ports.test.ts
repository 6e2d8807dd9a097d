/**
 * Per-flow UDP source ports (issue #16): our VTEP sends each inner flow from one socket of its
 * source-port pool, picked by a hash of the flow, as the kernel's VXLAN device picks a per-flow
 * source port, so that ECMP fabrics spread the tunnels. A capture on the kernel peer's underlay
 * shows distinct inner flows leaving from distinct ports in the kernel's ephemeral range, one
 * flow always from one port; with sourcePorts 0 everything leaves from 8472.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { HostProc, oursAndKernel, tcpTransfer, type OursAndKernel } from './harness.js';
import { readPcap } from '../codec/pcap-read.js';
import { startCapture } from '../helpers/capture.js';

const FLOWS = 24;
const REPEAT = 3;
const DST_PORT = 9;

/** Send REPEAT datagrams from each of FLOWS source ports in `h` to `dst`:DST_PORT. */
function sendFlows(h: NsHost, dst: string): void {
  const py = `
import socket, time
for i in range(${FLOWS}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('', 41000 + i))
    for r in range(${REPEAT}):
        s.sendto(b'flow %d rep %d' % (i, r), ('${dst}', ${DST_PORT}))
        time.sleep(0.002)
    s.close()
`;
  h.exec('python3', ['-c', py]);
}

/**
 * Capture tunnel datagrams to `port` on `h`'s u0 while `f` runs: inner UDP source port -> outer
 * source ports seen. The inner IPv4 packet starts `innerOff` bytes into the UDP payload (VXLAN:
 * its header and the inner Ethernet header; the UDP backend: 0).
 */
async function capture(tb: Testbed, h: NsHost, dir: string, f: () => void, port = 8472, innerOff = 8 + 14): Promise<Map<number, Set<number>>> {
  const cap = await startCapture(tb, h, 'u0', join(dir, `sp-${Date.now()}.pcap`), `udp dst port ${port}`);
  f();
  // every flow's datagrams were sent when f returned: wait until tcpdump has written them all
  return flowsIn(await cap.stop((file) => flowsIn(file, innerOff).size >= FLOWS), innerOff);
}

/**
 * The flows in a capture: inner UDP source port -> outer source ports seen. A UDP GSO send
 * crosses the veth as one packet (tcpdump sees it before segmentation): its datagrams lie back to
 * back in the UDP payload, each `innerOff` bytes of headers and an inner IPv4 packet of the length
 * its header gives, so every one of them is read (reading only the first hid a flow whose
 * datagrams all rode behind another's in GSO runs, as on a loaded machine).
 */
function flowsIn(file: string, innerOff: number): Map<number, Set<number>> {
  const flows = new Map<number, Set<number>>();
  for (const { data: fr } of readPcap(readFileSync(file)).records) {
    const udp = 14 + (fr[14]! & 15) * 4;
    const sport = fr.readUInt16BE(udp);
    for (let d = udp + 8; d + innerOff + 28 <= fr.length;) {
      const iip = d + innerOff;
      const tot = fr.readUInt16BE(iip + 2);
      if (fr[iip]! >>> 4 !== 4 || tot < 28) break;
      d = iip + tot;
      if (fr[iip + 9] !== 17) continue;
      const il4 = iip + (fr[iip]! & 15) * 4;
      if (fr.readUInt16BE(il4 + 2) !== DST_PORT) continue;
      const inner = fr.readUInt16BE(il4);
      let s = flows.get(inner);
      if (s === undefined) flows.set(inner, (s = new Set()));
      s.add(sport);
    }
  }
  return flows;
}

describe.runIf(requireNetns())('per-flow UDP source ports (our VTEP -> kernel flannel.1)', () => {
  let tb: Testbed;
  let dir: string;
  beforeAll(() => {
    tb = new Testbed('tnsp');
    dir = mkdtempSync(join(tmpdir(), 'od-sp-'));
  });
  afterAll(() => {
    tb?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  let bed: OursAndKernel;
  it('each inner flow leaves from one port of the pool, in the kernel range; flows spread over the pool', async () => {
    bed = await oursAndKernel(tb);
    const ports = (await bed.ours.stats()).stats.sourcePorts as number[];
    expect(ports).toHaveLength(16);
    expect(new Set(ports).size).toBe(16);
    const [lo, hi] = bed.a.exec('cat', ['/proc/sys/net/ipv4/ip_local_port_range']).trim().split(/\s+/).map(Number) as [number, number];
    const flows = await capture(tb, bed.b, dir, () => sendFlows(bed.a, '198.19.2.0'));
    expect(flows.size).toBe(FLOWS);
    const used = new Set<number>();
    for (const [inner, outer] of flows) {
      expect(outer.size, `flow from inner port ${inner}: one outer port`).toBe(1);
      const p = [...outer][0]!;
      expect(ports).toContain(p);
      expect(p).toBeGreaterThanOrEqual(lo);
      expect(p).toBeLessThanOrEqual(hi);
      used.add(p);
    }
    // 24 flows over 16 sockets: about 12 ports expected; fewer than 6 would take a broken hash
    expect(used.size).toBeGreaterThanOrEqual(6);
    // TCP (TSO super-packets segmented and sent as UDP GSO runs) still arrives intact through the pool
    const r = await tcpTransfer(tb, bed.b, '198.19.2.0', bed.a, 8 << 20, 5101, 60_000);
    expect(r.server.sha256).toBe(r.client.sha256);
    expect(r.server.bytes).toBe(8 << 20);
    const st = (await bed.ours.stats()).stats;
    expect(st.offload?.gsoSends).toBeGreaterThan(0);
    await bed.ours.stop();
  }, 90_000);

  it('the UDP backend (default: all from 8285, as flanneld) with sourcePorts 8: per-flow ports too', async () => {
    const tb3 = new Testbed('tnsu');
    try {
      const a = tb3.host('a');
      const b = tb3.host('b');
      tb3.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
      const base = { kind: 'udp', network: '198.19.0.0/16', transport: 'mmsg' };
      const ua = await HostProc.start(tb3, a, { ...base, subnet: '198.19.1.0/24', publicIp: '198.18.0.1', sourcePorts: 8 });
      const ub = await HostProc.start(tb3, b, { ...base, subnet: '198.19.2.0/24', publicIp: '198.18.0.2' });
      await ua.addPeer(ub.lease);
      await ub.addPeer(ua.lease);
      const ports = (await ua.stats()).stats.sourcePorts as number[];
      expect(ports).toHaveLength(8);
      expect((await ub.stats()).stats.sourcePorts, 'the UDP backend defaults to none').toBeUndefined();
      const flows = await capture(tb3, b, dir, () => sendFlows(a, '198.19.2.0'), 8285, 0);
      expect(flows.size).toBe(FLOWS);
      const used = new Set<number>();
      for (const outer of flows.values()) {
        expect(outer.size).toBe(1);
        expect(ports).toContain([...outer][0]);
        used.add([...outer][0]!);
      }
      expect(used.size).toBeGreaterThanOrEqual(4);
      // and b, without a pool, answers from 8285
      const back = await capture(tb3, a, dir, () => sendFlows(b, '198.19.1.0'), 8285, 0);
      expect(back.size).toBe(FLOWS);
      for (const outer of back.values()) expect([...outer]).toEqual([8285]);
      await ua.stop();
      await ub.stop();
    } finally {
      tb3.destroy();
    }
  }, 60_000);

  it('sourcePorts 0: every datagram leaves from port 8472', async () => {
    const tb2 = new Testbed('tnsq');
    try {
      const b2 = await oursAndKernel(tb2, { sourcePorts: 0 });
      expect((await b2.ours.stats()).stats.sourcePorts).toBeUndefined();
      const flows = await capture(tb2, b2.b, dir, () => sendFlows(b2.a, '198.19.2.0'));
      expect(flows.size).toBe(FLOWS);
      for (const outer of flows.values()) expect([...outer]).toEqual([8472]);
      await b2.ours.stop();
    } finally {
      tb2.destroy();
    }
  }, 60_000);
});
