/**
 * Regenerate test/fixtures/*.pcap from live kernel VXLAN traffic (needs root):
 *
 *   npx tsx test/codec/make-fixtures.ts
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed } from '../helpers/netns.js';
import { buildTopology, captureCase, CASES } from './kernel-capture.js';

const tb = new Testbed('odfx');
try {
  const [a] = buildTopology(tb);
  for (const c of CASES) {
    const pcap = await captureCase(tb, a, c);
    const out = join(import.meta.dirname, '..', 'fixtures', `${c.name}.pcap`);
    writeFileSync(out, pcap);
    console.log(`${out}: ${pcap.length} bytes`);
  }
} finally {
  tb.destroy();
}
