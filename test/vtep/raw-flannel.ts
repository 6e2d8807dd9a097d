/**
 * Speaks flannel's UDP-backend format with raw datagrams: sends a bare IPv4 ICMP echo
 * request from port 8285 and waits for the bare IPv4 echo reply.
 *   raw-flannel <bindIp> <peerIp> <innerSrc> <innerDst>
 * Prints {"ok":true,"from":"ip:port","icmpType":0,"src":..,"dst":..,"ttl":..} or {"ok":false}.
 */
import { createSocket } from 'node:dgram';

const [bind, peer, src, dst] = process.argv.slice(2) as [string, string, string, string];
function cs(b: Buffer): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
const p = Buffer.alloc(20 + 8 + 32);
p[0] = 0x45; p.writeUInt16BE(p.length, 2); p.writeUInt16BE(0x4000, 6); p[8] = 64; p[9] = 1;
Buffer.from(src.split('.').map(Number)).copy(p, 12);
Buffer.from(dst.split('.').map(Number)).copy(p, 16);
p.writeUInt16BE(cs(p.subarray(0, 20)), 10);
p[20] = 8; p.writeUInt16BE(0x77, 24); p.writeUInt16BE(1, 26);
for (let i = 28; i < p.length; i++) p[i] = i;
p.writeUInt16BE(cs(p.subarray(20)), 22);

const sock = createSocket('udp4');
const ip = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
sock.on('message', (m, r) => {
  if (m.length < 28 || m[9] !== 1 || m[20] !== 0) return;
  process.stdout.write(JSON.stringify({ ok: true, from: `${r.address}:${r.port}`, icmpType: m[20], src: ip(m, 12), dst: ip(m, 16), ttl: m[8] }) + '\n');
  process.exit(0);
});
sock.bind(8285, bind, () => {
  const send = () => sock.send(p, 8285, peer);
  send();
  const t = setInterval(send, 500);
  setTimeout(() => { clearInterval(t); process.stdout.write(JSON.stringify({ ok: false }) + '\n'); process.exit(0); }, 5000);
});
