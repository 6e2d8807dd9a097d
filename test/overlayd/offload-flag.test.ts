/** overlayd --offload: parsing, --help, BackendParams -> backend options, and the /metrics offload counters. */
import { describe, expect, it } from 'vitest';
import { HELP, parseCli, toBackendOptions, createMetrics, type BackendParams } from '../../src/overlayd/index.js';
import { ConfigError } from '../../src/overlayd/config.js';
import { DEFAULT_OFFLOAD, type DataplaneStats } from '../../src/vtep/index.js';

const base = ['--net-conf', 'n.json', '--subnet', '198.19.1.0/24'];

describe('overlayd --offload', () => {
  it('parses auto|off, leaves it unset by default, refuses anything else', () => {
    for (const v of ['auto', 'off'] as const) {
      const c = parseCli([...base, '--offload', v]);
      expect(c.kind === 'run' && c.options.offload).toBe(v);
    }
    const d = parseCli(base);
    expect(d.kind === 'run' && d.options.offload).toBeUndefined();
    expect(() => parseCli([...base, '--offload', 'on'])).toThrow(ConfigError);
    expect(HELP).toContain(`--offload auto|off     kernel offloads (default ${DEFAULT_OFFLOAD})`);
  });
  it('reaches the backend options', () => {
    const p: BackendParams = {
      type: 'vxlan', subnet: '198.19.1.0/24', network: '198.19.0.0/16', iface: 'u0', localIp: '198.18.0.1', publicIp: '198.18.0.1',
      port: 8472, vni: 1, gbp: false, directRouting: false, mtu: 1450, underlayMtu: 1500, transport: 'mmsg', offload: 'auto',
    };
    expect(toBackendOptions(p).offload).toBe('auto');
    expect(toBackendOptions({ ...p, offload: undefined }).offload).toBeUndefined();
  });
  it('/metrics mirrors stats().offload', async () => {
    const s: DataplaneStats = {
      txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, drops: {}, peers: {},
      offload: { superPackets: 3, segmentsOut: 90, gsoSends: 3, gsoSegments: 90, groMessages: 2, groSegments: 40, coalescedWrites: 2, coalescedSegments: 40, rxSuperPackets: 1, csumFinished: 0, coalesceCsumFallbacks: 5 },
    };
    const reg = createMetrics(() => s, { backend: 'vxlan', subnet: 's', public_ip: 'p', iface: 'i', transport: 'mmsg' }, () => 0, { defaultMetrics: false });
    const m = await reg.metrics();
    expect(m).toMatch(/^overlayd_offload_super_packets_total 3$/m);
    expect(m).toMatch(/^overlayd_offload_gso_segments_total 90$/m);
    expect(m).toMatch(/^overlayd_offload_coalesced_writes_total 2$/m);
    expect(m).toMatch(/^overlayd_offload_csum_finished_total 0$/m);
    expect(m).toMatch(/^overlayd_offload_coalesce_csum_fallbacks_total 5$/m);
  });
});
