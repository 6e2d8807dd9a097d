import { describe, expect, it, afterAll } from 'vitest';
import { Testbed, requireNetns } from './helpers/netns.js';

describe.runIf(requireNetns())('netns testbed', () => {
  const tb = new Testbed('smk');
  afterAll(() => tb.destroy());
  it('creates two hosts on a veth and pings', () => {
    const a = tb.host('a');
    const b = tb.host('b');
    tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
    const out = a.exec('ping', ['-c', '1', '-W', '2', '198.18.0.2']);
    expect(out).toMatch(/1 received/);
  });
});
