/**
 * Child process for the src/tun namespace tests: runs inside `ip netns exec <ns>` so its
 * devices and sockets live in that namespace. Mode = argv[2]. Prints JSON lines on stdout:
 * {"ev":"ready"} once set up, other events as they happen. Exits when stdin closes.
 * Packet building here is a tiny local helper on purpose (src/codec is developed separately).
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { TunDevice, TapDevice, Rtnl, NUD, type PacketSlot } from '../../src/tun/index.js';

const mode = process.argv[2];
const say = (o: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
const onStdin = (f: (line: string) => void): void => {
  let buf = '';
  process.stdin.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { f(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  process.stdin.on('end', () => process.exit(0));
};

/** Internet checksum of b[off, off+len). */
function csum(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Turn the IPv4 ICMP echo request at b[off..] into an echo reply in place; returns false if it is not one. */
function echoReply(b: Buffer, off: number, len: number): boolean {
  if (len < 28 || b[off] >> 4 !== 4 || b[off + 9] !== 1) return false;
  const ihl = (b[off] & 15) * 4;
  if (b[off + ihl] !== 8) return false;
  for (let i = 0; i < 4; i++) { const t = b[off + 12 + i]; b[off + 12 + i] = b[off + 16 + i]; b[off + 16 + i] = t; }
  b.writeUInt16BE(0, off + 10);
  b.writeUInt16BE(csum(b, off, ihl), off + 10);
  b[off + ihl] = 0;
  b.writeUInt16BE(0, off + ihl + 2);
  b.writeUInt16BE(csum(b, off + ihl, len - ihl), off + ihl + 2);
  return true;
}

async function tunPing(): Promise<void> {
  // argv[3] === 'vnet': IFF_VNET_HDR (virtio header kept out of the slots) on odtun5 / 198.19.4.0/24.
  const vnet = process.argv[3] === 'vnet';
  const dev = vnet
    ? await TunDevice.create({ name: 'odtun5', mtu: 1400, addresses: ['198.19.4.1/24'], up: true, batch: 32, vnetHdr: true })
    : await TunDevice.create({ name: 'odtun0', mtu: 1400, addresses: ['198.19.0.1/24'], up: true, batch: 32 });
  let replies = 0;
  dev.onBatch((slots: PacketSlot[], count: number) => {
    const out: PacketSlot[] = [];
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      if (echoReply(s.buf, s.off, s.len)) out.push(s);
    }
    if (out.length) replies += dev.writeBatch(out, out.length);
    say({ ev: 'batch', count, replies });
  });
  say({ ev: 'ready', name: dev.name, ifindex: dev.ifindex, mtu: dev.mtu });
  onStdin(() => undefined);
}

async function tunBatch(): Promise<void> {
  const dev = await TunDevice.create({ name: 'odtun1', addresses: ['198.19.2.1/24'], up: true, batch: 64 });
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '198.19.2.1', r));
  const payload = Buffer.alloc(100, 0x5a);
  for (let i = 0; i < 8; i++) await new Promise<void>((r) => sock.send(payload, 9999, '198.19.2.2', () => r()));
  await new Promise((r) => setTimeout(r, 200));
  const counts: number[] = [];
  let udp = 0;
  dev.onBatch((slots, count) => {
    counts.push(count);
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      if (s.buf[s.off] >> 4 === 4 && s.buf[s.off + 9] === 17 && s.len === 128 && s.buf.readUInt16BE(s.off + 22) === 9999) udp++;
    }
    if (udp >= 8) { say({ ev: 'result', counts, udp, offOk: slots[0].off === 96 }); sock.close(); dev.close(); process.exit(0); }
  });
  setTimeout(() => { say({ ev: 'result', counts, udp }); process.exit(1); }, 5000);
}

async function tunIter(): Promise<void> {
  const dev = await TunDevice.create({ name: 'odtun2', addresses: ['198.19.3.1/24'], up: true });
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '198.19.3.1', r));
  let seen = 0;
  setTimeout(() => { for (let i = 0; i < 4; i++) sock.send(Buffer.alloc(10), 7777, '198.19.3.2'); }, 50);
  for await (const b of dev) {
    for (let i = 0; i < b.count; i++) if (b.slots[i].buf[b.slots[i].off + 9] === 17) seen++;
    if (seen >= 4) break;
  }
  dev.close();
  say({ ev: 'result', seen });
  sock.close();
}

const TAP_PEER_MAC = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);
const TAP_PEER_IP = Buffer.from([198, 19, 1, 2]);

async function tapPing(): Promise<void> {
  const dev = await TapDevice.create({ name: 'odtap0', mtu: 1500, addresses: ['198.19.1.1/24'], up: true, mac: '02:00:00:00:00:01' });
  let arp = 0, icmp = 0;
  dev.onBatch((slots, count) => {
    const out: PacketSlot[] = [];
    for (let i = 0; i < count; i++) {
      const s = slots[i], b = s.buf, o = s.off;
      const et = b.readUInt16BE(o + 12);
      if (et === 0x0806 && b.readUInt16BE(o + 20) === 1 && b.subarray(o + 38, o + 42).equals(TAP_PEER_IP)) {
        arp++;
        say({ ev: 'arp', sender: [...b.subarray(o + 28, o + 32)].join('.'), len: s.len });
        // ARP reply: eth dst = requester, src = peer; tha/tpa = requester, sha/spa = peer.
        b.copy(b, o, o + 22, o + 28);
        TAP_PEER_MAC.copy(b, o + 6);
        b.writeUInt16BE(2, o + 20);
        b.copy(b, o + 32, o + 22, o + 32);
        TAP_PEER_MAC.copy(b, o + 22);
        TAP_PEER_IP.copy(b, o + 28);
        s.len = 42;
        out.push(s);
      } else if (et === 0x0800 && echoReply(b, o + 14, s.len - 14)) {
        icmp++;
        b.copy(b, o, o + 6, o + 12);
        TAP_PEER_MAC.copy(b, o + 6);
        out.push(s);
      }
    }
    if (out.length) dev.writeBatch(out, out.length);
    say({ ev: 'batch', count, arp, icmp });
  });
  say({ ev: 'ready', name: dev.name, mac: dev.mac });
  onStdin(() => undefined);
}

async function lifecycle(): Promise<void> {
  const tun = await TunDevice.create({ name: 'odlife0', up: true });
  const tap = await TapDevice.create({ name: 'odlife1' });
  let err: { code?: string; message?: string } = {};
  try { TunDevice.open({ name: 'odlife0' }); } catch (e) { err = e as Error & { code?: string }; }
  const mq = await TunDevice.create({ name: 'odlife2', multiQueue: true });
  const q2 = mq.openQueue();
  const persist = await TapDevice.create({ name: 'odlife3', persist: true });
  say({ ev: 'ready', busy: { code: err.code, message: err.message }, q2name: q2.name, mqFlag: mq.multiQueue });
  onStdin((line) => {
    if (line === 'closeq1') { mq.close(); say({ ev: 'closedq1' }); }
    if (line === 'close') {
      tun.close(); tun.close(); tap.close(); q2.close(); persist.close();
      say({ ev: 'closed', closed: tun.closed && tap.closed && q2.closed && persist.closed });
    }
  });
}

async function rtnl(): Promise<void> {
  const rt = Rtnl.open();
  const out: Record<string, unknown> = {};
  // rt0 (one end of a veth pair) is created by the test with `ip`; everything else through netlink.
  await rt.setLink('rt0', { mtu: 1450, mac: '02:11:22:33:44:55', up: true });
  await rt.addAddress('rt0', '198.19.5.1/24');
  await rt.addAddress('rt0', 'fd00:5::1/64', { nodad: true });
  await rt.addRoute({ dst: '198.19.6.0/24', via: '198.19.7.1', dev: 'rt0', onlink: true });
  await rt.addRoute({ dst: '198.19.8.0/24', dev: 'rt0', metric: 7 });
  await rt.replaceRoute({ dst: '198.19.8.0/24', dev: 'rt0', metric: 7, src: '198.19.5.1' });
  await rt.addRoute({ dst: 'fd00:9::/64', via: 'fd00:5::2', dev: 'rt0' });
  await rt.addNeighbour({ dev: 'rt0', address: '198.19.5.9', lladdr: '02:aa:bb:cc:dd:09' });
  await rt.replaceNeighbour({ dev: 'rt0', address: '198.19.5.10', lladdr: '02:aa:bb:cc:dd:0a', state: NUD.REACHABLE });
  await rt.addNeighbour({ dev: 'rt0', address: 'fd00:5::9', lladdr: '02:aa:bb:cc:dd:99' });
  await rt.addVxlan({ name: 'vx0', vni: 42, port: 8472, local: '198.19.5.1', dev: 'rt0' });
  await rt.linkUp('vx0');
  await rt.appendFdb({ dev: 'vx0', mac: '00:00:00:00:00:00', dst: '198.19.5.20' });
  await rt.appendFdb({ dev: 'vx0', mac: '00:00:00:00:00:00', dst: '198.19.5.21' });
  await rt.addFdb({ dev: 'vx0', mac: '02:00:00:00:00:33', dst: '198.19.5.22' });
  const errs: Record<string, string | undefined> = {};
  const causes: Record<string, string | undefined> = {};
  const grab = async (k: string, f: () => Promise<unknown>): Promise<void> => {
    try { await f(); errs[k] = 'no error'; } catch (e) {
      errs[k] = `${(e as { code?: string }).code} ${(e as Error).message}`;
      causes[k] = ((e as Error).cause as { code?: string } | undefined)?.code;
    }
  };
  await grab('dupRoute', () => rt.addRoute({ dst: '198.19.8.0/24', dev: 'rt0', metric: 7 }));
  await grab('noDev', () => rt.getLink('nosuchdev0'));
  await grab('badGw', () => rt.addRoute({ dst: '198.19.12.0/24', via: '198.18.200.1', dev: 'rt0' }));
  out.errs = errs;
  out.causes = causes;
  const link = await rt.getLink('rt0');
  out.link = link;
  out.links = (await rt.listLinks()).map((l) => l.name);
  out.addrs = (await rt.listAddresses('rt0')).map((a) => a.cidr);
  out.routes = (await rt.listRoutes()).filter((r) => r.oif === link.index).map((r) => ({ dst: r.dst, gw: r.gateway, onlink: r.onlink, metric: r.metric, src: r.prefsrc }));
  out.neigh = (await rt.listNeighbours({ dev: 'rt0' })).map((n) => ({ a: n.address, ll: n.lladdr, state: n.state }));
  out.fdb = (await rt.listFdb('vx0')).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`);
  out.vxKind = (await rt.getLink('vx0')).kind;
  // The blocking helpers used at start-up agree with the async ones.
  out.sync = { links: rt.listLinksSync().map((l) => l.name), addrs: rt.listAddressesSync('rt0', 4).map((a) => a.cidr), mtu: rt.getLinkSync('rt0').mtu };
  say({ ev: 'ready', ...out });
  onStdin(async (line) => {
    if (line !== 'delete') return;
    await rt.delRoute({ dst: '198.19.6.0/24', via: '198.19.7.1', dev: 'rt0' });
    await rt.delRoute({ dst: '198.19.8.0/24', dev: 'rt0' });
    await rt.delNeighbour({ dev: 'rt0', address: '198.19.5.9' });
    await rt.delAddress('rt0', '198.19.5.1/24');
    await rt.delFdb({ dev: 'vx0', mac: '00:00:00:00:00:00', dst: '198.19.5.20' });
    await rt.linkDown('rt0');
    await rt.deleteLink('vx0');
    say({ ev: 'deleted' });
  });
}

async function unpriv(): Promise<void> {
  const res: Record<string, string> = {};
  try { await TunDevice.create({ name: 'odnp0' }); res.tun = 'no error'; } catch (e) { res.tun = `${(e as { code?: string }).code}|${(e as Error).message}`; }
  try { await Rtnl.open().setLink('lo', { mtu: 1500 }); res.rtnl = 'no error'; } catch (e) { res.rtnl = `${(e as { code?: string }).code}|${(e as Error).message}`; }
  // Report who we ran as: uid and whether CAP_NET_ADMIN (bit 12) is in the effective set.
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  say({ ev: 'result', ...res, uid: process.getuid?.(), netAdmin: (BigInt(`0x${capEff}`) & (1n << 12n)) !== 0n });
}

/**
 * Event-loop liveness while many rtnetlink requests are in flight: a 1 ms timer and a
 * loopback UDP echo keep running; reports the largest timer gap and echo round trip.
 * argv[3]: number of rounds (each: a burst of concurrent requests, then a sequential run).
 */
async function stall(): Promise<void> {
  const rounds = Number(process.argv[3] ?? 40);
  const rt = Rtnl.open();
  await rt.getLink('lo');
  let last = performance.now(), maxGap = 0, ticks = 0;
  const timer = setInterval(() => { const t = performance.now(); if (t - last > maxGap) maxGap = t - last; last = t; ticks++; }, 1);
  const srv = dgram.createSocket('udp4');
  srv.on('message', (m, r) => srv.send(m, r.port, r.address));
  await new Promise<void>((r) => srv.bind(0, '127.0.0.1', r));
  const cli = dgram.createSocket('udp4');
  let echoes = 0, maxRtt = 0, lastEcho = performance.now(), maxEchoGap = 0;
  cli.on('message', (m) => {
    const t = performance.now();
    echoes++;
    maxRtt = Math.max(maxRtt, t - m.readDoubleLE(0));
    maxEchoGap = Math.max(maxEchoGap, t - lastEcho);
    lastEcho = t;
  });
  await new Promise<void>((r) => cli.bind(0, '127.0.0.1', r));
  const port = (srv.address()).port;
  const ping = setInterval(() => { const b = Buffer.alloc(8); b.writeDoubleLE(performance.now(), 0); cli.send(b, port, '127.0.0.1'); }, 2);
  // Let the probes settle before measuring.
  await new Promise((r) => setTimeout(r, 50));
  maxGap = 0; maxRtt = 0; maxEchoGap = 0; echoes = 0; ticks = 0; lastEcho = performance.now(); last = performance.now();
  const t0 = performance.now();
  let requests = 0;
  for (let round = 0; round < rounds; round++) {
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < 32; i++) {
      burst.push(rt.addAddress('lo', `198.18.${round & 0xff}.${i + 1}/32`, { replace: true }));
      burst.push(rt.getLink('lo'));
    }
    await Promise.all(burst);
    requests += burst.length;
    for (let i = 0; i < 32; i++) { await rt.delAddress('lo', `198.18.${round & 0xff}.${i + 1}/32`); requests++; }
    await rt.listLinks(); requests++;
  }
  const elapsed = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20));
  clearInterval(timer); clearInterval(ping);
  cli.close(); srv.close(); rt.close();
  say({ ev: 'result', rounds, requests, elapsed, maxGap, ticks, echoes, maxRtt, maxEchoGap });
}

const modes: Record<string, () => Promise<void>> = { tunPing, tunBatch, tunIter, tapPing, lifecycle, rtnl, unpriv, stall };
const fn = modes[mode];
if (!fn) { say({ ev: 'error', message: `unknown mode ${mode}` }); process.exit(2); }
fn().catch((e: unknown) => { say({ ev: 'error', code: (e as { code?: string }).code, message: (e as Error).message }); process.exit(1); });
