#!/usr/bin/env node
/**
 * The `overlayd` executable: runs a flannel-compatible dataplane on this host.
 * See `overlayd --help` (src/overlayd/cli.ts).
 */
import { runCli } from './run.js';

void runCli(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exit(code);
});
