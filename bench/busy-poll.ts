/**
 * `npx tsx bench/busy-poll.ts [--pings N] [--rounds R] [--us U]` (as root): does busy-polling
 * (`busyPollUs`, overlayd --busy-poll-us) shorten a round trip? One userspace VTEP (host a,
 * VXLAN, mmsg) against a kernel VXLAN peer (host b), so only one process polls; rounds
 * alternate off and on, each on fresh namespaces, N pings every 10 ms after 50 to warm up.
 * (bench/stages.ts measures two overlayd hosts, where on 2 vCPUs both pollers compete.)
 */
import { parseArgs } from 'node:util';
import { Testbed } from '../test/helpers/netns.js';
import { oursAndKernel } from '../test/vtep/harness.js';
import { measureRtt } from './lib/ping.js';

const { values } = parseArgs({ options: { pings: { type: 'string', default: '500' }, rounds: { type: 'string', default: '3' }, us: { type: 'string', default: '300' } } });
const PINGS = Number(values.pings);
const ROUNDS = Number(values.rounds);
const US = Number(values.us);

const rows: string[] = [`| round | busy-poll µs | RTT p50 µs | RTT p99 µs | batches polled |`, '|---:|---:|---:|---:|---:|'];
for (let round = 1; round <= ROUNDS; round++) {
  for (const bp of [0, US]) {
    const tb = new Testbed('tbbp');
    try {
      const { a, ours } = await oursAndKernel(tb, { busyPollUs: bp });
      try {
        await measureRtt(a, '198.19.1.0', '198.19.2.0', 50);
        const r = await measureRtt(a, '198.19.1.0', '198.19.2.0', PINGS);
        const polled = ((await ours.stats()).stats as { busyPolled?: number }).busyPolled ?? 0;
        rows.push(`| ${round} | ${bp} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${polled} |`);
        process.stderr.write(rows[rows.length - 1] + '\n');
      } finally {
        await ours.stop();
      }
    } finally {
      tb.destroy();
    }
  }
}
process.stdout.write(`Command: \`npx tsx bench/busy-poll.ts --pings ${PINGS} --rounds ${ROUNDS} --us ${US}\`\n\n${rows.join('\n')}\n`);
