/**
 * systemd readiness (`Type=notify`): sd_notify's protocol is one datagram of "KEY=VALUE" lines
 * to the Unix socket named by $NOTIFY_SOCKET (a path, or '@name' in the abstract namespace).
 * Sent through the project's own addon (node:dgram has no Unix datagram sockets); no libsystemd.
 */
import { native } from '../tun/native.js';

/**
 * Send `state` (e.g. "READY=1\nSTATUS=forwarding") to $NOTIFY_SOCKET of `env`. Returns false
 * when there is no such socket (not started by systemd with Type=notify); throws an Error with
 * the errno when the send fails.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const path = env.NOTIFY_SOCKET;
  if (path === undefined || path === '') return false;
  const send = native().unixDgramSend;
  if (send === undefined) throw new Error('sd_notify: the overlay_native addon is out of date (no unixDgramSend): run `npm install` to rebuild it');
  send(path, Buffer.from(state, 'utf8'));
  return true;
}
