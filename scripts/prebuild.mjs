#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): build the prebuilt addons shipped in the package,
// prebuilds/linux-x64 and prebuilds/linux-arm64 (N-API, glibc-tagged, stripped), with prebuildify.
// arm64 is cross-compiled with Debian's g++-aarch64-linux-gnu; PREBUILD_ARCHS=x64 leaves it out.
// prebuildify builds in build/, so the host's own build is made last and build/Release stays usable.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { arch } from 'node:os';

const CROSS = { arm64: 'aarch64-linux-gnu' };
const wanted = (process.env.PREBUILD_ARCHS ?? 'x64,arm64').split(',').map((s) => s.trim()).filter(Boolean);
const host = arch();
const order = [...wanted.filter((a) => a !== host), ...(wanted.includes(host) ? [host] : [])];

function run(a) {
  const env = { ...process.env };
  const args = ['--napi', '--strip', '--tag-libc'];
  if (a !== host) {
    const t = CROSS[a];
    if (t === undefined) return `no cross toolchain known for ${a}`;
    if (spawnSync(`${t}-g++`, ['--version'], { stdio: 'ignore' }).status !== 0) {
      return `the linux-${a} prebuild needs ${t}-g++ (apt-get install g++-${t}), or set PREBUILD_ARCHS=${host}`;
    }
    Object.assign(env, { CC: `${t}-gcc`, CXX: `${t}-g++`, LINK: `${t}-g++`, PREBUILD_STRIP_BIN: `${t}-strip` });
    args.push('--arch', a);
  }
  const r = spawnSync('prebuildify', args, { stdio: 'inherit', env, shell: false });
  return r.status === 0 ? undefined : `prebuildify for linux-${a} failed (exit ${r.status ?? r.signal})`;
}

rmSync('prebuilds', { recursive: true, force: true });
let failed;
for (const a of order) {
  failed = run(a);
  if (failed) break;
}
if (failed && order.at(-1) !== host) run(host); // leave a host build in build/ whatever happened
if (failed) {
  process.stderr.write(`prebuild: ${failed}\n`);
  process.exit(1);
}
