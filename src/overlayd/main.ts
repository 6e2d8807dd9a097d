#!/usr/bin/env node
/**
 * The `overlayd` executable: runs a flannel-compatible dataplane on this host.
 * See `overlayd --help` (src/overlayd/cli.ts).
 */
import { spawnEarly } from './early.js';

// the supervisor's packet process boots while this one loads (src/overlayd/early.ts)
spawnEarly(process.argv.slice(2));
const { runCli } = await import('./run.js');
void runCli(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exit(code);
});
