/**
 * UDP datagram tool for the interop tests.
 *   server <bindIp> <port> <count>         prints {"listening":true}; then, once <count> datagrams came or
 *                                          1 s passed without one, {"received":N,"valid":N,"dups":N,"sizes":{...}}
 *   client <ip> <port> <count> <size> <burst>   sends <count> datagrams of <size> bytes in bursts of
 *                                          <burst> (a pause between bursts), prints {"sent":N}
 * Datagram k carries k as a 32-bit number, then bytes (k * 7 + i) & 255: every byte is checked.
 */
import { createSocket } from 'node:dgram';

const [mode, host, portS, countS, sizeS, burstS] = process.argv.slice(2);
const port = Number(portS);
const count = Number(countS);
const say = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

if (mode === 'server') {
  const sock = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const seen = new Set<number>();
  const sizes: Record<string, number> = {};
  let received = 0;
  let valid = 0;
  let dups = 0;
  let idle: NodeJS.Timeout | undefined;
  const done = (): void => { say({ received, valid, dups, sizes }); process.exit(0); };
  sock.on('message', (m: Buffer) => {
    received++;
    sizes[m.length] = (sizes[m.length] ?? 0) + 1;
    if (m.length >= 4) {
      const k = m.readUInt32BE(0);
      let ok = true;
      for (let i = 4; i < m.length; i++) if (m[i] !== ((k * 7 + i) & 255)) { ok = false; break; }
      if (ok) { if (seen.has(k)) dups++; else { seen.add(k); valid++; } }
    }
    if (received >= count) done();
    clearTimeout(idle);
    idle = setTimeout(done, 1000);
  });
  sock.bind(port, host, () => say({ listening: true }));
} else {
  const size = Number(sizeS);
  const burst = Number(burstS);
  const sock = createSocket('udp4');
  let k = 0;
  const next = (): void => {
    for (let b = 0; b < burst && k < count; b++, k++) {
      const m = Buffer.alloc(size);
      m.writeUInt32BE(k, 0);
      for (let i = 4; i < size; i++) m[i] = (k * 7 + i) & 255;
      sock.send(m, port, host);
    }
    if (k < count) setTimeout(next, 5);
    else setTimeout(() => { say({ sent: k }); process.exit(0); }, 100);
  };
  next();
}
