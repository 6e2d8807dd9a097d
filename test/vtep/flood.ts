/**
 * Attack traffic for the robustness test: floods `target:port` with a rotating mix of
 * garbage, truncated, wrong-VNI, bad-flags and inner-spoofed VXLAN datagrams.
 *   flood <target> <port> <ms> <bindAddr> <vni> <innerDst>
 * Prints {"sent":N} at the end.
 */
import { createSocket } from 'node:dgram';

// (an IPv6 target: a udp6 socket, bound to an IPv6 source)
import { randomBytes } from 'node:crypto';

const [target, portS, msS, bind, vniS, innerDst] = process.argv.slice(2);
const port = Number(portS);
const vni = Number(vniS);
const sock = createSocket(target!.includes(':') ? 'udp6' : 'udp4');

function vxlan(v: number, flags: number, inner: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = flags;
  h.writeUIntBE(v, 4, 3);
  return Buffer.concat([h, inner]);
}
function ipPacket(src: string, dst: string): Buffer {
  const b = Buffer.alloc(60);
  b[0] = 0x45; b.writeUInt16BE(60, 2); b[8] = 64; b[9] = 17;
  Buffer.from(src.split('.').map(Number)).copy(b, 12);
  Buffer.from(dst.split('.').map(Number)).copy(b, 16);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b.writeUInt16BE(~s & 0xffff, 10);
  return b;
}
const eth = Buffer.from('ffffffffffff020000000202' + '0800', 'hex');
const kinds: Buffer[] = [
  randomBytes(200),                                                         // garbage
  randomBytes(5),                                                           // truncated
  vxlan(vni ^ 0x55, 0x08, Buffer.concat([eth, ipPacket('198.19.2.9', innerDst!)])), // wrong VNI
  vxlan(vni, 0x0c, Buffer.concat([eth, ipPacket('198.19.2.9', innerDst!)])),        // bad flags
  vxlan(vni, 0x08, Buffer.concat([eth, ipPacket('198.19.77.7', innerDst!)])),       // spoofed inner source
  vxlan(vni, 0x08, Buffer.concat([eth, Buffer.alloc(10)])),                         // truncated inner
];

sock.bind(0, bind, () => {
  const until = Date.now() + Number(msS);
  let sent = 0;
  let inFlight = 0;
  const tick = (): void => {
    if (Date.now() >= until) {
      const done = (): void => { if (inFlight === 0) { process.stdout.write(JSON.stringify({ sent }) + '\n'); sock.close(); } else setTimeout(done, 10); };
      done();
      return;
    }
    for (let i = 0; i < 64 && inFlight < 256; i++) {
      const k = kinds[sent % kinds.length]!;
      const fresh = sent % kinds.length === 0 ? randomBytes(50 + (sent % 300)) : k;
      inFlight++;
      sock.send(fresh, port, target!, () => { inFlight--; });
      sent++;
    }
    setImmediate(tick);
  };
  tick();
});
