/**
 * TCP transfer tool for the interop tests (no nc needed).
 *   server <bindIp> <port>          prints {"listening":true}, then {"bytes":N,"sha256":"..."} after the first connection ends
 *   client <ip> <port> <bytes> [rate]  sends N random bytes (paced at `rate` bytes/s when given), prints {"bytes":N,"sha256":"..."}
 */
import { createServer, connect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';

const [mode, host, portS, bytesS] = process.argv.slice(2);
const port = Number(portS);

if (mode === 'server') {
  const srv = createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    sock.on('data', (d: Buffer) => { h.update(d); n += d.length; });
    sock.on('end', () => {
      process.stdout.write(JSON.stringify({ bytes: n, sha256: h.digest('hex') }) + '\n');
      sock.end(() => process.exit(0));
    });
    sock.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message, bytes: n }) + '\n'); process.exit(1); });
  });
  srv.listen(port, host, () => process.stdout.write(JSON.stringify({ listening: true }) + '\n'));
} else {
  const total = Number(bytesS);
  const rate = Number(process.argv[6] ?? 0);
  const h = createHash('sha256');
  const sock = connect({ host: host!, port });
  let sent = 0;
  let t0 = 0;
  const pump = (): void => {
    while (sent < total) {
      // paced: no further ahead than `rate` bytes per second since the connection
      if (rate > 0 && sent >= ((performance.now() - t0) / 1000) * rate) { setTimeout(pump, 2); return; }
      const chunk = randomBytes(Math.min(65536, total - sent));
      h.update(chunk);
      sent += chunk.length;
      if (!sock.write(chunk)) { sock.once('drain', pump); return; }
    }
    sock.end();
  };
  sock.on('connect', () => { t0 = performance.now(); pump(); });
  sock.on('close', () => { process.stdout.write(JSON.stringify({ bytes: sent, sha256: h.digest('hex') }) + '\n'); process.exit(0); });
  sock.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message, bytes: sent }) + '\n'); process.exit(1); });
}
