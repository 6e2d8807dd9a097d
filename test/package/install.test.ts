/**
 * A tool author's install (issue #16): `npm pack` the working tree as a publisher would (prepack
 * builds the prebuilt addons, prepare builds dist/), install the tarball into an empty project
 * offline, and use the package from there: types resolve (tsc over README's TypeScript examples
 * and a type probe), ESM and CommonJS imports work, README's examples run as written and print
 * what their comments say, `npx overlayd` works, and the addon comes from the prebuild (npm 11
 * runs no dependency install scripts by default), or from a source build once allowed.
 *
 * The pack runs in a copy of the working tree (prebuildify rebuilds build/, which other test
 * files load meanwhile). Dependencies come from npm's cache only: the project gets a lockfile
 * made from this repository's, so `npm ci --offline` needs no registry metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Testbed, netnsAvailable, type NsHost } from '../helpers/netns.js';

const REPO = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  name: string; version: string; license: string; dependencies: Record<string, string>; bin: Record<string, string>; engines: Record<string, string>;
};
const hasCross = spawnSync('aarch64-linux-gnu-g++', ['--version'], { stdio: 'ignore' }).status === 0;
/** CI installs the cross compiler (.ci/run), so there the arm64 prebuild is required. */
const wantArm64 = hasCross || process.env.CI === 'true';

/** A README code block in a language, with its index among all blocks. */
export function codeBlocks(md: string, lang: string): string[] {
  const out: string[] = [];
  const re = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm');
  for (let m = re.exec(md); m; m = re.exec(md)) out.push(m[1]!);
  return out;
}

/**
 * What an example says it prints: each `console.log(...)` line with a trailing `// text` comment
 * (comments with "..." describe rather than quote, and are not checked), in order.
 */
export function expectedOutput(code: string): string[] {
  const out: string[] = [];
  for (const line of code.split('\n')) {
    const m = /console\.log\(.*\);\s*\/\/\s*(.+)$/.exec(line);
    if (m && !m[1]!.includes('...')) out.push(m[1]!.trim());
  }
  return out;
}

/** Run a command; returns stdout, throws with the command's stderr on failure. */
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeout = 120_000): string {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${r.stderr}\n${r.stdout}`.slice(0, 4000));
  return r.stdout;
}

const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
/** README's TypeScript examples that use the package. */
const examples = codeBlocks(readme, 'ts').filter((c) => c.includes("from 'overlay-dataplane'"));
/** Examples that make devices and sockets (they run in a namespace host). */
const needsNetns = (code: string): boolean => /\.start\(\)/.test(code);

describe('the package as a tool author installs it', () => {
  let tmp = '';
  let app = '';
  let tarball = '';
  let files: string[] = [];
  const tb = new Testbed('tbpk');

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'odpkg-'));
    // 1. npm pack, in a copy of the working tree
    const src = join(tmp, 'src');
    mkdirSync(src);
    for (const f of ['package.json', 'package-lock.json', 'README.md', 'binding.gyp', 'tsconfig.json', 'tsconfig.build.json', 'native', 'src', 'scripts', 'docs', 'packaging']) {
      if (existsSync(join(REPO, f))) cpSync(join(REPO, f), join(src, f), { recursive: true });
    }
    symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'));
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], src, wantArm64 ? {} : { PREBUILD_ARCHS: 'x64' }, 180_000)
      .replace(/^[^[]*/, '')) as { filename: string; files: { path: string }[] }[];
    tarball = join(tmp, packed[0]!.filename);
    files = packed[0]!.files.map((f) => f.path);

    // 2. an empty project, with a lockfile from ours (exact versions and integrity: no registry metadata needed)
    app = join(tmp, 'app');
    mkdirSync(app);
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string; resolved?: string; dependencies?: Record<string, string> }> };
    const registry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim().replace(/\/?$/, '/');
    const tgzName = packed[0]!.filename;
    cpSync(tarball, join(app, tgzName));
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    const packages: Record<string, object> = {
      '': { name: 'app', dependencies: { [pkg.name]: `file:${tgzName}` } },
      [`node_modules/${pkg.name}`]: { version: pkg.version, resolved: `file:${tgzName}`, integrity, hasInstallScript: true, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
    };
    const todo = Object.keys(pkg.dependencies);
    while (todo.length > 0) {
      const name = todo.pop()!;
      const key = `node_modules/${name}`;
      if (packages[key]) continue;
      const e = lock.packages[key];
      if (!e) throw new Error(`${key} is not in package-lock.json`);
      packages[key] = { ...e, resolved: e.resolved ?? `${registry}${name}/-/${name.split('/').pop()}-${e.version}.tgz` };
      todo.push(...Object.keys(e.dependencies ?? {}));
    }
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { [pkg.name]: `file:${tgzName}` } }, null, 2));
    writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }, null, 2));
    run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], app);

    // 3. README's examples and a type probe, compiled by tsc with the types from the installed package
    examples.forEach((code, i) => writeFileSync(join(app, `readme-${i}.ts`), code));
    writeFileSync(join(app, 'probe.ts'), [
      "import { parseNetConf, HostModel, type NetConf, type Lease } from 'overlay-dataplane';",
      "const c: NetConf = parseNetConf('{\"Network\": \"198.19.0.0/16\"}');",
      'const len: number = c.subnetLen;',
      "const l: Lease = { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' };",
      '// @ts-expect-error: a typed package refuses this (it would pass if the types were `any`)',
      'const bad: string = c.subnetLen;',
      'new HostModel({ vni: 1 });',
      'console.log(len, l.subnet, bad);',
      '',
    ].join('\n'));
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', skipLibCheck: false,
        types: ['node'], typeRoots: [join(REPO, 'node_modules/@types')],
      },
      include: ['*.ts'],
    }));
  }, 240_000);

  afterAll(() => {
    tb.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs dist, the prebuilt addons and the sources for a fallback build, nothing else', () => {
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('dist/overlayd/main.js');
    expect(files).toContain('binding.gyp');
    expect(files).toContain('native/addon.cc');
    expect(files).toContain('packaging/overlayd.service');
    expect(files).toContain('prebuilds/linux-x64/overlay-dataplane.glibc.node');
    if (wantArm64) expect(files).toContain('prebuilds/linux-arm64/overlay-dataplane.glibc.node');
    expect(files.filter((f) => /^(src|test|bench|examples|build)\//.test(f))).toEqual([]);
  });

  it('installs without running a build: the addon is the prebuilt one', () => {
    const dir = join(app, 'node_modules', pkg.name);
    expect(existsSync(join(dir, 'build'))).toBe(false);
    expect(readdirSync(join(dir, 'prebuilds'))).toContain('linux-x64');
    // importing and using the addon (a netlink dump of this namespace's links: unprivileged)
    writeFileSync(join(app, 'esm.mjs'), [
      "import { Rtnl, parseNetConf } from 'overlay-dataplane';",
      "console.log('vni', parseNetConf('{\"Network\": \"198.19.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}').backend.vni);",
      'const rt = Rtnl.open();',
      "console.log('links', rt.listLinksSync().some((l) => l.name === 'lo'));",
      'rt.close();',
    ].join('\n'));
    expect(run('node', ['esm.mjs'], app)).toBe('vni 1\nlinks true\n');
  });

  it('imports from CommonJS too (require of an ES module, Node >= 20.19)', () => {
    writeFileSync(join(app, 'cjs.cjs'), "const od = require('overlay-dataplane'); console.log(typeof od.HostModel, typeof od.VxlanBackend);\n");
    expect(run('node', ['cjs.cjs'], app)).toBe('function function\n');
  });

  it('types resolve: README examples and a type probe compile with strict tsc', () => {
    expect(examples.length).toBeGreaterThanOrEqual(3);
    run('node', [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
    expect(existsSync(join(app, 'out', 'probe.js'))).toBe(true);
  });

  it('npx overlayd --help and --version', () => {
    expect(run('npx', ['--offline', 'overlayd', '--help'], app)).toMatch(/^Usage: overlayd --net-conf FILE --subnet CIDR/);
    expect(run('npx', ['--offline', 'overlayd', '--version'], app)).toBe(`overlayd ${pkg.version}\n`);
  });

  describe.each(examples.map((code, i) => ({ code, i })))('README example $i', ({ code, i }) => {
    const needs = needsNetns(code);
    it.runIf(!needs || netnsAvailable())('runs as written and prints what its comments say', () => {
      let out: string;
      if (needs) {
        // devices and sockets only inside a namespace host of our own, on a 198.18.0.0/24 underlay
        const a: NsHost = tb.host(`a${i}`);
        const b: NsHost = tb.host(`b${i}`);
        tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
        out = a.exec('node', [join(app, 'out', `readme-${i}.js`)], { timeout: 30_000 });
      } else {
        out = run('node', [join('out', `readme-${i}.js`)], app);
      }
      const want = expectedOutput(code);
      const lines = out.split('\n');
      let at = 0;
      for (const w of want) {
        const found = lines.findIndex((l, k) => k >= at && l.trim() === w);
        expect(found, `expected "${w}" in:\n${out}`).toBeGreaterThanOrEqual(0);
        at = found + 1;
      }
      expect(out).not.toMatch(/dropped:/);
    });
  });

  it('builds the addon from source when allowed (no prebuild used)', () => {
    const p = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as Record<string, unknown>;
    p.allowScripts = { [pkg.name]: true };
    writeFileSync(join(app, 'package.json'), JSON.stringify(p, null, 2));
    run('npm', ['rebuild', pkg.name], app, { npm_config_build_from_source: 'true' });
    expect(existsSync(join(app, 'node_modules', pkg.name, 'build', 'Release', 'overlay_native.node'))).toBe(true);
    expect(run('node', ['esm.mjs'], app)).toBe('vni 1\nlinks true\n');
  }, 120_000);
});
