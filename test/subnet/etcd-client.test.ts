/**
 * The etcd client on etcd's JSON gateway: its response parsers refuse what they do not expect
 * (pure, no etcd), and against real etcds: the operations, endpoint failover, the response size
 * bound, user/password authentication, and TLS with a client certificate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdClient, EtcdError, parseGrant, parseKv, parseRange, parseTxn, parseWatchEvent, parseWatchMessage, prefixEnd, type WatchMessage } from '../../src/index.js';
import { etcdAvailable, etcdctl, freePort, startEtcd, type TestEtcd } from '../helpers/etcd.js';

const b = (s: string): string => Buffer.from(s).toString('base64');

/** Wait (at most 5 s) until `f()` holds. */
async function waitFor(f: () => boolean): Promise<void> {
  for (const end = Date.now() + 5000; !f() && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
}
const header = { header: { cluster_id: '1', member_id: '2', revision: '7', raft_term: '2' } };

describe('etcd gateway response parsers', () => {
  it('range: keys and values decoded, int64 strings read, absent fields are zero, junk refused with a reason', () => {
    const ok = parseRange({ ...header, kvs: [{ key: b('/a'), create_revision: '3', mod_revision: '5', version: '2', value: b('v'), lease: '7587886273441395204' }, { key: b('/b') }], count: '2' });
    expect(ok).toEqual({ ok: true, value: { revision: 7, kvs: [
      { key: '/a', value: Buffer.from('v'), createRevision: 3, modRevision: 5, version: 2, lease: '7587886273441395204' },
      { key: '/b', value: Buffer.alloc(0), createRevision: 0, modRevision: 0, version: 0, lease: '0' },
    ] } });
    expect(parseRange(header)).toEqual({ ok: true, value: { revision: 7, kvs: [] } });
    for (const [junk, why] of [
      [null, /no header/], [[], /no header/], [{ header: { revision: 'x' } }, /revision/], [{ ...header, kvs: {} }, /kvs/],
      [{ ...header, kvs: [{ key: '!!' }] }, /key/], [{ ...header, kvs: [{ key: b('/a'), value: 5 }] }, /value/],
      [{ ...header, kvs: [{ key: b('/a'), mod_revision: '1e9' }] }, /revision/], [{ ...header, kvs: [{ key: b('/a'), lease: {} }] }, /lease/],
    ] as [unknown, RegExp][]) {
      const r = parseRange(junk);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(why);
    }
    expect(parseKv({ key: '' }).ok).toBe(false);
    expect(parseRange({ ...header, kvs: [{ key: b('/a') }, { key: b('/b') }], more: true })).toMatchObject({ ok: true, value: { next: Buffer.from('/b\0') } });
    expect(parseRange({ ...header, more: 'yes' }).ok).toBe(false);
  });

  it('txn: succeeded left out means false; grant needs an ID and a positive TTL', () => {
    expect(parseTxn(header)).toEqual({ ok: true, value: { revision: 7, succeeded: false } });
    expect(parseTxn({ ...header, succeeded: true })).toEqual({ ok: true, value: { revision: 7, succeeded: true } });
    expect(parseTxn({ ...header, succeeded: 'yes' }).ok).toBe(false);
    expect(parseGrant({ ...header, ID: '42', TTL: '86400' })).toEqual({ ok: true, value: { id: '42', ttl: 86400 } });
    expect(parseGrant({ ...header, TTL: '5' }).ok).toBe(false);
    expect(parseGrant({ ...header, ID: '42', TTL: '0' }).ok).toBe(false);
  });

  it('watch messages: created, events (PUT left out of type), compaction cancel, stream errors, junk', () => {
    const r = (o: unknown): WatchMessage | string => { const p = parseWatchMessage(o); return p.ok ? p.value : p.reason; };
    expect(r({ result: { ...header, created: true } })).toEqual({ kind: 'created', revision: 7 });
    expect(r({ result: { ...header, events: [{ kv: { key: b('/k'), value: b('1'), mod_revision: '7' } }, { type: 'DELETE', kv: { key: b('/j'), mod_revision: '7' } }] } })).toMatchObject({
      kind: 'events', revision: 7, events: [{ type: 'put', kv: { key: '/k' } }, { type: 'delete', kv: { key: '/j' } }],
    });
    expect(r({ result: { header: { revision: '0' }, canceled: true, compact_revision: '4' } })).toEqual({ kind: 'canceled', compactRevision: 4, reason: 'compacted' });
    expect(r({ error: { grpc_code: 14, message: 'etcdserver: no leader' } })).toEqual({ kind: 'canceled', compactRevision: 0, reason: 'etcdserver: no leader' });
    expect(r({ result: header })).toEqual({ kind: 'progress', revision: 7 });
    expect(r({ result: { ...header, events: [{ type: 'PATCH', kv: { key: b('/k') } }] } })).toMatch(/PUT or DELETE/);
    // rawEvents: the events come unchecked, each is checked on its own (a bad one is found then)
    const events = [{ kv: { key: b('/k'), mod_revision: '7' } }, { type: 'PATCH', kv: { key: b('/k') } }];
    expect(parseWatchMessage({ result: { ...header, events } }, true)).toEqual({ ok: true, value: { kind: 'raw-events', revision: 7, events } });
    expect(parseWatchEvent(events[0])).toMatchObject({ ok: true, value: { type: 'put', kv: { key: '/k', modRevision: 7 } } });
    expect(parseWatchEvent(events[1])).toMatchObject({ ok: false, reason: expect.stringMatching(/PUT or DELETE/) as unknown });
    expect(parseWatchEvent({ type: 'DELETE', kv: { key: '!!' } }).ok).toBe(false);
    expect(r('x')).toMatch(/not an object/);
    expect(r({})).toMatch(/no result/);
  });

  it('prefixEnd is the first key after the prefix', () => {
    expect(prefixEnd('/coreos.com/network/subnets/').toString()).toBe('/coreos.com/network/subnets0');
    expect([...prefixEnd('a\u00ff')]).toEqual([0x61, 0xc3, 0xc0]);
  });
});

describe.runIf(etcdAvailable())('etcd client against real etcds', () => {
  let etcd: TestEtcd;
  beforeAll(async () => { etcd = await startEtcd(); });
  afterAll(async () => { await etcd?.stop(); });

  it('put, range (one key, a prefix), create only when absent, lease grant/revoke deletes the key, delete', async () => {
    const c = new EtcdClient({ endpoints: [etcd.url] });
    try {
      await c.put('/c/a', 'one');
      expect((await c.range('/c/a')).kvs.map((kv) => kv.value.toString())).toEqual(['one']);
      expect(await c.create('/c/a', 'two')).toBe(false);
      const g = await c.grant(60);
      expect(g.ttl).toBe(60);
      expect(await c.create('/c/b', 'two', g.id)).toBe(true);
      const r = await c.range('/c/', { prefix: true });
      expect(r.kvs.map((kv) => [kv.key, kv.lease === '0'])).toEqual([['/c/a', true], ['/c/b', false]]);
      await c.revoke(g.id);
      await c.revoke(g.id); // gone already: not an error
      expect((await c.range('/c/b')).kvs).toEqual([]);
      // in pages at one revision: a key written between the pages is not in the listing
      for (const k of ['/c/p1', '/c/p2', '/c/p3']) await c.put(k, k);
      const p1 = await c.range('/c/p', { prefix: true, limit: 2 });
      expect(p1.kvs.map((kv) => kv.key)).toEqual(['/c/p1', '/c/p2']);
      expect(p1.next).toEqual(Buffer.from('/c/p2\0'));
      await c.put('/c/p2b', 'later');
      const p2 = await c.range('/c/p', { prefix: true, limit: 2, revision: p1.revision, from: p1.next });
      expect(p2.kvs.map((kv) => kv.key)).toEqual(['/c/p3']);
      expect(p2.next).toBeUndefined();
      await c.delete('/c/', { prefix: true });
      expect((await c.range('/c/', { prefix: true })).kvs).toEqual([]);
    } finally {
      c.close();
    }
  });

  it('an endpoint that does not answer is skipped; a response over the size bound is an error, not parsed', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const c = new EtcdClient({ endpoints: [dead, etcd.url], maxResponseBytes: 4096 });
    try {
      await c.put('/big', 'x'.repeat(8000));
      await expect(c.range('/big')).rejects.toThrow(/response over 4096 bytes/);
      expect(c.endpoint).toBe(etcd.url);
      expect((await c.range('/nothing')).kvs).toEqual([]);
    } finally {
      c.close();
    }
    const none = new EtcdClient({ endpoints: [dead], timeoutMs: 1000 });
    const e = await none.range('/x').catch((err: unknown) => err);
    none.close();
    expect(e).toBeInstanceOf(EtcdError);
    expect((e as EtcdError).kind).toBe('unreachable');
    expect(() => new EtcdClient({ endpoints: ['ftp://x'] })).toThrow(/scheme/);
    expect(() => new EtcdClient({ endpoints: [etcd.url], caFile: '/nonexistent/ca.pem' })).toThrow(/--etcd-cafile \/nonexistent\/ca\.pem: no such file/);
  });

  it('user and password: a token from /v3/auth/authenticate, fetched again when it expired (calls and watches); a wrong password is refused', async () => {
    const a = await startEtcd({ args: ['--auth-token-ttl', '1'] });
    try {
      etcdctl(a.url, 'user', 'add', 'root:rootpw');
      etcdctl(a.url, 'auth', 'enable');
      const c = new EtcdClient({ endpoints: [a.url], username: 'root', password: 'rootpw' });
      await c.put('/auth/k', 'v');
      expect((await c.range('/auth/k')).kvs[0]!.value.toString()).toBe('v');
      await new Promise((r) => setTimeout(r, 1600)); // the token expires (--auth-token-ttl 1)
      expect((await c.range('/auth/k')).kvs[0]!.value.toString()).toBe('v');
      await new Promise((r) => setTimeout(r, 1600));
      const seen: WatchMessage[] = [];
      const w = c.watch('/auth/', 1, { onMessage: (m) => seen.push(m), onEnd: () => undefined });
      await waitFor(() => seen.length >= 2);
      w.close();
      c.close();
      expect(seen.map((m) => m.kind)).toEqual(['created', 'events']);
      const bad = new EtcdClient({ endpoints: [a.url], username: 'root', password: 'nope' });
      await expect(bad.range('/auth/k')).rejects.toThrow(/authentication failed/);
      bad.close();
      const anon = new EtcdClient({ endpoints: [a.url] });
      await expect(anon.range('/auth/k')).rejects.toThrow(EtcdError);
      anon.close();
    } finally {
      await a.stop();
    }
  });

  it('TLS with a client certificate (--etcd-cafile, --etcd-certfile, --etcd-keyfile); no certificate, no access', async () => {
    const d = mkdtempSync(join(tmpdir(), 'od-etcd-tls-'));
    const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: d, stdio: 'pipe' }); };
    let t: TestEtcd | undefined;
    try {
      ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test-ca');
      writeFileSync(join(d, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
      for (const n of ['server', 'client']) {
        ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`);
        ssl('x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${n}.pem`, '-days', '2', '-extfile', 'san.cnf');
      }
      const ca = join(d, 'ca.pem');
      t = await startEtcd({ tls: { cert: join(d, 'server.pem'), key: join(d, 'server.key'), ca } });
      const c = new EtcdClient({ endpoints: [t.url], caFile: ca, certFile: join(d, 'client.pem'), keyFile: join(d, 'client.key') });
      await c.put('/tls/k', 'v');
      const seen: WatchMessage[] = [];
      const w = c.watch('/tls/', 1, { onMessage: (m) => seen.push(m), onEnd: () => undefined });
      await waitFor(() => seen.length >= 2);
      w.close();
      expect((await c.range('/tls/k')).kvs[0]!.value.toString()).toBe('v');
      c.close();
      expect(seen.map((m) => m.kind)).toEqual(['created', 'events']);
      const noCert = new EtcdClient({ endpoints: [t.url], caFile: ca, timeoutMs: 2000 });
      await expect(noCert.range('/tls/k')).rejects.toThrow(EtcdError);
      noCert.close();
    } finally {
      await t?.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
