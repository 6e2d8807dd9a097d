/**
 * rtnetlink notifications: a NETLINK_ROUTE socket subscribed to multicast groups (links,
 * IPv4 and IPv6 addresses) whose messages are parsed and handed to a callback as typed events. Watched
 * with uv_poll like the request socket (nothing blocks the event loop). When the kernel drops
 * notifications (the receive queue overflowed: ENOBUFS), an `overrun` event tells the owner to
 * read the current state again with a dump.
 */
import { NativeNlTransport, type NlTransport } from './socket.js';
import { parseMessages } from './message.js';
import { RTM_DELLINK, RTM_NEWLINK, parseLink, type LinkInfo } from './link.js';
import { RTM_DELADDR, RTM_NEWADDR, parseAddress, type AddressInfo } from './addr.js';

/** Multicast groups (RTMGRP_* of linux/rtnetlink.h). */
export const RTMGRP_LINK = 0x1, RTMGRP_IPV4_IFADDR = 0x10, RTMGRP_IPV6_IFADDR = 0x100;

/** One notification. */
export type NlEvent =
  | { kind: 'link'; op: 'new' | 'del'; link: LinkInfo }
  | { kind: 'addr'; op: 'new' | 'del'; addr: AddressInfo }
  /** Notifications were lost (receive queue overflow) or unreadable: read the state again. */
  | { kind: 'overrun'; why: string };

/** Options of {@link NlMonitor.open}. */
export interface MonitorGroups {
  /** Link changes (RTNLGRP_LINK: up/down, carrier, rename, delete). */
  link?: boolean;
  /** IPv4 address changes (RTNLGRP_IPV4_IFADDR). */
  ipv4Addr?: boolean;
  /** IPv6 address changes (RTNLGRP_IPV6_IFADDR). */
  ipv6Addr?: boolean;
}

/** A subscription to rtnetlink notifications. */
export class NlMonitor {
  private readonly rbuf = Buffer.allocUnsafe(1 << 16);
  private closed = false;
  /** Events delivered, and overruns seen. */
  readonly stats = { events: 0, overruns: 0 };

  /** Watch `transport` (a netlink socket already subscribed) and call `onEvent` for each notification. */
  constructor(private readonly transport: NlTransport, private readonly onEvent: (ev: NlEvent) => void) {
    transport.watch(this.onReadable);
  }

  /** Subscribe to `groups` in this process's network namespace. */
  static open(groups: MonitorGroups, onEvent: (ev: NlEvent) => void): NlMonitor {
    const mask = (groups.link ? RTMGRP_LINK : 0) | (groups.ipv4Addr ? RTMGRP_IPV4_IFADDR : 0) | (groups.ipv6Addr ? RTMGRP_IPV6_IFADDR : 0);
    return new NlMonitor(NativeNlTransport.open(0, mask), onEvent);
  }

  /** Stop watching and close the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.transport.stopWatch();
    this.transport.close();
  }

  private emit(ev: NlEvent): void {
    if (ev.kind === 'overrun') this.stats.overruns++; else this.stats.events++;
    try {
      this.onEvent(ev);
    } catch (e) {
      process.emitWarning(`netlink monitor: event handler threw: ${(e as Error).message}`);
    }
  }

  private readonly onReadable = (): void => {
    for (let i = 0; i < 64 && !this.closed; i++) {
      let n: number;
      try {
        n = this.transport.recv(this.rbuf);
      } catch (e) {
        this.emit({ kind: 'overrun', why: (e as { code?: string }).code ?? (e as Error).message });
        continue; // ENOBUFS is reported once; the queue is readable again
      }
      if (n < 0) return;
      if (n > this.rbuf.length) { this.emit({ kind: 'overrun', why: `datagram of ${n} bytes truncated` }); continue; }
      const { messages, error } = parseMessages(this.rbuf, n);
      for (const m of messages) {
        if (m.type === RTM_NEWLINK || m.type === RTM_DELLINK) {
          const r = parseLink(m.body);
          if (r.ok) this.emit({ kind: 'link', op: m.type === RTM_NEWLINK ? 'new' : 'del', link: r.value });
        } else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) {
          const r = parseAddress(m.body);
          if (r.ok && r.value !== null) this.emit({ kind: 'addr', op: m.type === RTM_NEWADDR ? 'new' : 'del', addr: r.value });
        }
      }
      if (error) this.emit({ kind: 'overrun', why: `malformed notification (${error.reason})` });
    }
  };
}
