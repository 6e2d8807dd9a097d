/** The netlink codec (src/tun/netlink/message.ts) and the per-kind parsers: round trips, and garbage in gives a typed reason, never an exception. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AttrWriter, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_MULTI, NLM_F_REQUEST, attrStr, attrU16be, attrU32, attrU8,
  encodeError, encodeMessage, parseAttrs, parseError, parseMessages, writeU16, writeU32,
} from '../../src/tun/netlink/message.js';
import { linkChangePayload, parseLink, vxlanPayload, RTM_NEWLINK } from '../../src/tun/netlink/link.js';
import { addrPayload, parseAddress } from '../../src/tun/netlink/addr.js';
import { parseRoute, routePayload, RTM_NEWROUTE } from '../../src/tun/netlink/route.js';
import { fdbPayload, neighPayload, parseFdb, parseNeigh } from '../../src/tun/netlink/neigh.js';

describe('netlink messages', () => {
  it('encode then parse round-trips header fields and body, several per datagram', () => {
    const a = encodeMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_MULTI, 0x12345678, Buffer.from([1, 2, 3]), 77);
    const b = encodeMessage(NLMSG_DONE, NLM_F_MULTI, 9, Buffer.alloc(4));
    expect(a.length).toBe(19);
    // Datagram: a (padded to 20) then b.
    const dgram = Buffer.concat([a, Buffer.alloc(1), b]);
    const r = parseMessages(dgram);
    expect(r.error).toBeUndefined();
    expect(r.messages).toHaveLength(2);
    expect(r.messages[0]).toMatchObject({ type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_MULTI, seq: 0x12345678, pid: 77 });
    expect([...r.messages[0].body]).toEqual([1, 2, 3]);
    expect(r.messages[1]).toMatchObject({ type: NLMSG_DONE, seq: 9 });
  });

  it('truncated and garbage datagrams return the messages so far and a typed reason', () => {
    const m = encodeMessage(RTM_NEWLINK, 0, 1, Buffer.alloc(8));
    expect(parseMessages(m.subarray(0, 10))).toEqual({ messages: [], error: { reason: 'short-header', offset: 0 } });
    expect(parseMessages(m.subarray(0, 20)).error).toEqual({ reason: 'truncated', offset: 0 });
    const bad = Buffer.from(m);
    writeU32(bad, 3, 0);
    expect(parseMessages(bad).error?.reason).toBe('bad-length');
    const two = Buffer.concat([m, m.subarray(0, 20)]);
    const r = parseMessages(two);
    expect(r.messages).toHaveLength(1);
    expect(r.error).toEqual({ reason: 'truncated', offset: 24 });
    // `len` limits the view.
    expect(parseMessages(two, 24)).toEqual({ messages: [expect.objectContaining({ seq: 1 })] });
  });

  it('attributes round-trip (u32, u16 network order, u8, string, nested) and bad ones are typed', () => {
    const inner = new AttrWriter().u32(1, 42);
    const buf = new AttrWriter().u32(1, 0xdeadbeef).u16be(2, 8472).u8(3, 7).str(4, 'vx0').nested(5, inner).add(6, Buffer.alloc(0)).bytes();
    expect(buf.length % 4).toBe(0);
    const p = parseAttrs(buf);
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(attrU32(p.value, 1)).toBe(0xdeadbeef);
    expect(attrU16be(p.value, 2)).toBe(8472);
    expect(attrU8(p.value, 3)).toBe(7);
    expect(attrStr(p.value, 4)).toBe('vx0');
    const n = parseAttrs(p.value.get(5)!);
    expect(n.ok && attrU32(n.value, 1)).toBe(42);
    expect(p.value.get(6)!.length).toBe(0);
    // Too-short values read as absent.
    expect(attrU32(p.value, 3)).toBeUndefined();
    expect(attrU32(p.value, 99)).toBeUndefined();
    // nla_len past the end, nla_len < 4, a partial trailing header.
    const over = Buffer.from(buf); writeU16(over, 200, 0);
    expect(parseAttrs(over)).toEqual({ ok: false, error: { reason: 'truncated', offset: 0 } });
    const tiny = Buffer.from(buf); writeU16(tiny, 2, 8);
    expect(parseAttrs(tiny)).toEqual({ ok: false, error: { reason: 'bad-attribute', offset: 8 } });
    expect(parseAttrs(Buffer.concat([buf, Buffer.from([5, 0])]))).toEqual({ ok: false, error: { reason: 'truncated', offset: buf.length } });
    expect(parseAttrs(Buffer.concat([buf, Buffer.from([0, 0])])).ok).toBe(true);
  });

  it('NLMSG_ERROR: ack, errno, extended ack message, short body', () => {
    const ack = encodeError(0, { type: RTM_NEWROUTE, seq: 5 });
    expect(parseError(ack.body, ack.flags)).toEqual({ ok: true, value: { errno: 0, request: { type: RTM_NEWROUTE, seq: 5 } } });
    const e = encodeError(17, { type: RTM_NEWROUTE, seq: 6 }, 'Route exists');
    expect(e.flags & NLM_F_ACK_TLVS).toBeTruthy();
    expect(parseError(e.body, e.flags)).toEqual({ ok: true, value: { errno: 17, message: 'Route exists', request: { type: RTM_NEWROUTE, seq: 6 } } });
    expect(parseError(Buffer.alloc(2), 0)).toEqual({ ok: false, error: { reason: 'short-body', offset: 0 } });
    // TLV flag but garbage TLVs: still the errno, no message, no throw.
    const g = Buffer.concat([e.body.subarray(0, 20), Buffer.from([0xff, 0xff, 1, 0])]);
    expect(parseError(g, e.flags)).toEqual({ ok: true, value: { errno: 17, request: { type: RTM_NEWROUTE, seq: 6 } } });
    expect(NLMSG_ERROR).toBe(2);
  });

  it('addrgenmode: IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE u8 } }, as iproute2 sends it', () => {
    const p = linkChangePayload(7, { ipv6AddrGenMode: 'none' });
    // ifinfomsg (16) + AF_SPEC (len 16) holding AF_INET6 (len 12) holding ADDR_GEN_MODE (len 5, padded to 8)
    expect([...p.subarray(16)]).toEqual([16, 0, 26, 0, 12, 0, 10, 0, 5, 0, 8, 0, 1, 0, 0, 0]);
    expect(linkChangePayload(7, { ipv6AddrGenMode: 'eui64' })[28]).toBe(0);
    expect(linkChangePayload(7, { ipv6AddrGenMode: 'random' })[28]).toBe(3);
  });

  it('object payloads parse back (link, address, route, neighbour, FDB)', () => {
    // A request body has the same layout as the kernel's reply for these kinds.
    const link = parseLink(linkChangePayload(7, { mtu: 1450, mac: '02:11:22:33:44:55', name: 'rt0', txqlen: 500, up: true }));
    expect(link).toEqual({ ok: true, value: { index: 7, name: 'rt0', mtu: 1450, flags: 1, up: true, mac: '02:11:22:33:44:55', txqlen: 500 } });
    const vx = parseLink(vxlanPayload({ name: 'vx0', vni: 42, port: 8472, local: '198.19.5.1', mtu: 1400 }, 3));
    expect(vx.ok && vx.value).toMatchObject({ name: 'vx0', kind: 'vxlan', mtu: 1400 });
    expect(parseAddress(addrPayload(4, 'fd00:5::1/64', true))).toEqual({ ok: true, value: { index: 4, family: 6, address: 'fd00:5::1', prefixLen: 64, cidr: 'fd00:5::1/64', scope: 0 } });
    const rt = parseRoute(routePayload(RTM_NEWROUTE, { dst: '198.19.6.0/24', via: '198.19.7.1', onlink: true, metric: 7, src: '198.19.5.1' }, 9));
    expect(rt).toEqual({ ok: true, value: { family: 4, dst: '198.19.6.0/24', gateway: '198.19.7.1', oif: 9, table: 254, protocol: 3, scope: 0, type: 1, metric: 7, prefsrc: '198.19.5.1', onlink: true } });
    expect(parseNeigh(neighPayload({ dev: 2, address: '198.19.5.9', lladdr: '02:aa:bb:cc:dd:09' }, 2))).toEqual({ ok: true, value: { index: 2, family: 4, address: '198.19.5.9', lladdr: '02:aa:bb:cc:dd:09', state: 0x80, flags: 0 } });
    expect(parseFdb(fdbPayload({ dev: 5, mac: '00:00:00:00:00:00', dst: '198.19.5.20', vni: 42, port: 8472 }, 5))).toEqual({
      ok: true, value: { index: 5, mac: '00:00:00:00:00:00', dst: '198.19.5.20', vni: 42, port: 8472, state: 0xc0, flags: 2 },
    });
    // Other families are skipped (null), short headers are typed failures.
    expect(parseNeigh(fdbPayload({ dev: 5, mac: '02:00:00:00:00:01' }, 5))).toEqual({ ok: true, value: null });
    expect(parseLink(Buffer.alloc(8))).toEqual({ ok: false, error: { reason: 'short-body', offset: 0 } });
  });

  it('no parser throws on arbitrary bytes', () => {
    const parsers = [parseLink, parseAddress, parseRoute, parseNeigh, parseFdb, (b: Buffer) => parseAttrs(b), (b: Buffer) => parseError(b, NLM_F_ACK_TLVS)];
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const b = Buffer.from(bytes);
      const batch = parseMessages(b);
      for (const m of batch.messages) for (const p of parsers) p(m.body);
      for (const p of parsers) {
        const r = p(b);
        expect(typeof r.ok).toBe('boolean');
      }
    }), { numRuns: 2000 });
  });
});
