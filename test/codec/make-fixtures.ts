/**
 * Regenerate test/fixtures/*.pcap from live kernel VXLAN traffic (needs root):
 *
 *   npx tsx test/codec/make-fixtures.ts [case name ...]   (default: every case)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed } from '../helpers/netns.js';
import { buildTopology, captureCase, CASES } from './kernel-capture.js';

const tb = new Testbed('odfx');
try {
  const [a] = buildTopology(tb);
  const only = process.argv.slice(2);
  for (const c of CASES.filter((x) => only.length === 0 || only.includes(x.name))) {
    const pcap = await captureCase(tb, a, c);
    const out = join(import.meta.dirname, '..', 'fixtures', `${c.name}.pcap`);
    writeFileSync(out, pcap);
    console.log(`${out}: ${pcap.length} bytes`);
  }
} finally {
  tb.destroy();
}
