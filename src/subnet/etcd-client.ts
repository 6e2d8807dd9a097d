/**
 * A small etcd v3 client over etcd's JSON gRPC gateway (`POST /v3/...`, served by etcd 3.4+ on
 * its client port), with node:http / node:https only: range, put, delete, a create-if-absent
 * transaction, lease grant/revoke, a streaming watch, and user/password authentication. Keys and
 * values travel base64-encoded; int64 fields arrive as decimal strings and zero fields are left
 * out. Every response is size-bounded and checked field by field: a parser returns a typed
 * reason instead of trusting the shape.
 */
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** Largest unary response read (bytes); a larger one is an error, not parsed. */
export const MAX_ETCD_RESPONSE_BYTES = 64 << 20;
/** Largest single watch message read (bytes). */
export const MAX_WATCH_MESSAGE_BYTES = 64 << 20;

/** Options of {@link EtcdClient}. */
export interface EtcdClientOptions {
  /** Client URLs ("http://127.0.0.1:2379", "https://etcd1:2379"); a bare "host:port" means http. */
  endpoints: string[];
  /** PEM CA bundle to verify the server (https endpoints). */
  caFile?: string;
  /** PEM client certificate (with keyFile: TLS client authentication). */
  certFile?: string;
  /** PEM client key. */
  keyFile?: string;
  /** etcd user (auth enabled on the server). */
  username?: string;
  /** etcd password. */
  password?: string;
  /** Timeout of one unary request, ms (default 5000). */
  timeoutMs?: number;
  /** Largest unary response, bytes (default {@link MAX_ETCD_RESPONSE_BYTES}). */
  maxResponseBytes?: number;
}

/** Why a call failed: the server could not be reached, or it answered with an error or junk. */
export type EtcdErrorKind = 'unreachable' | 'server' | 'protocol';

/** A failed etcd call. `code` is etcd's gRPC status code when the server sent one. */
export class EtcdError extends Error {
  constructor(readonly kind: EtcdErrorKind, message: string, readonly code?: number) {
    super(message);
    this.name = 'EtcdError';
  }
}

/** gRPC status codes etcd uses that callers act on. */
export const GRPC_OUT_OF_RANGE = 11;
export const GRPC_UNAUTHENTICATED = 16;
export const GRPC_INVALID_ARGUMENT = 3;
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_UNAVAILABLE = 14;

/** A parse result: the value, or why the input was refused. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** One key-value pair as etcd holds it. */
export interface EtcdKv {
  /** The key (UTF-8). */
  key: string;
  /** The value bytes. */
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The etcd lease the key is bound to, as a decimal string; "0" for none (a key without a TTL). */
  lease: string;
}

/** A range answer: the keys and the store's revision when read. */
export interface RangeResult {
  revision: number;
  kvs: EtcdKv[];
  /** Set when a limit cut the answer short: the key to read on from (the last key and a zero byte). */
  next?: Buffer;
}

/** A granted lease. */
export interface GrantResult {
  /** Lease ID, decimal string (int64). */
  id: string;
  /** Granted TTL, seconds. */
  ttl: number;
}

/** A watch event. */
export interface WatchEvent {
  type: 'put' | 'delete';
  kv: EtcdKv;
}

/** One message of a watch stream. */
export type WatchMessage =
  | { kind: 'created'; revision: number }
  | { kind: 'events'; revision: number; events: WatchEvent[] }
  /**
   * Events not checked yet (a watch with {@link WatchHandlers.rawEvents}): each is checked with
   * {@link parseWatchEvent} when it is used.
   */
  | { kind: 'raw-events'; revision: number; events: readonly unknown[] }
  /** Progress or other header-only message. */
  | { kind: 'progress'; revision: number }
  /** The server ended the watch; `compactRevision` > 0 when the start revision was compacted. */
  | { kind: 'canceled'; compactRevision: number; reason: string };

type Obj = { [k: string]: unknown };
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** An int64 field as etcd's gateway writes it: a decimal string (or a number), absent meaning 0. */
function int64(o: Obj, k: string): number | undefined {
  const v = o[k];
  if (v === undefined) return 0;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d{1,16}$/.test(v)) return Number(v);
  return undefined;
}

/** A lease ID field: a decimal string of an int64, absent meaning "0". */
function leaseId(o: Obj, k: string): string | undefined {
  const v = o[k];
  if (v === undefined) return '0';
  if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  return undefined;
}

function b64(o: Obj, k: string): Buffer | undefined {
  const v = o[k];
  if (v === undefined) return Buffer.alloc(0);
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) return undefined;
  return Buffer.from(v, 'base64');
}

/** The revision of a response's `header`. */
export function parseHeader(o: unknown): Parsed<number> {
  if (!isObj(o) || !isObj(o.header)) return fail('no header');
  const r = int64(o.header, 'revision');
  return r === undefined ? fail('header.revision is not an int64') : { ok: true, value: r };
}

/** One `kv` object (mvccpb.KeyValue). */
export function parseKv(o: unknown): Parsed<EtcdKv> {
  if (!isObj(o)) return fail('kv is not an object');
  const key = b64(o, 'key');
  const value = b64(o, 'value');
  if (key === undefined || key.length === 0) return fail('kv.key is not base64');
  if (value === undefined) return fail('kv.value is not base64');
  const createRevision = int64(o, 'create_revision');
  const modRevision = int64(o, 'mod_revision');
  const version = int64(o, 'version');
  const lease = leaseId(o, 'lease');
  if (createRevision === undefined || modRevision === undefined || version === undefined) return fail('kv revision is not an int64');
  if (lease === undefined) return fail('kv.lease is not an int64');
  return { ok: true, value: { key: key.toString('utf8'), value, createRevision, modRevision, version, lease } };
}

/** A RangeResponse. */
export function parseRange(o: unknown): Parsed<RangeResult> {
  const h = parseHeader(o);
  if (!h.ok) return h;
  const raw = (o as Obj).kvs ?? [];
  if (!Array.isArray(raw)) return fail('kvs is not an array');
  const kvs: EtcdKv[] = [];
  for (const r of raw) {
    const kv = parseKv(r);
    if (!kv.ok) return kv;
    kvs.push(kv.value);
  }
  const more = (o as Obj).more ?? false;
  if (typeof more !== 'boolean') return fail('more is not a boolean');
  if (!more || raw.length === 0) return { ok: true, value: { revision: h.value, kvs } };
  // the key as bytes (a key that is not UTF-8 would not survive the string)
  const last = b64(raw[raw.length - 1] as Obj, 'key')!;
  return { ok: true, value: { revision: h.value, kvs, next: Buffer.concat([last, Buffer.from([0])]) } };
}

/** A TxnResponse: whether the comparison held (etcd leaves `succeeded` out when false). */
export function parseTxn(o: unknown): Parsed<{ revision: number; succeeded: boolean }> {
  const h = parseHeader(o);
  if (!h.ok) return h;
  const s = (o as Obj).succeeded ?? false;
  if (typeof s !== 'boolean') return fail('succeeded is not a boolean');
  return { ok: true, value: { revision: h.value, succeeded: s } };
}

/** A LeaseGrantResponse. */
export function parseGrant(o: unknown): Parsed<GrantResult> {
  const h = parseHeader(o);
  if (!h.ok) return h;
  const id = leaseId(o as Obj, 'ID');
  const ttl = int64(o as Obj, 'TTL');
  if (id === undefined || id === '0') return fail('ID is not a lease ID');
  if (ttl === undefined || ttl <= 0) return fail('TTL is not a positive int64');
  if (typeof (o as Obj).error === 'string' && (o as Obj).error !== '') return fail(`grant refused: ${String((o as Obj).error)}`);
  return { ok: true, value: { id, ttl } };
}

/** An AuthenticateResponse: the token. */
export function parseAuth(o: unknown): Parsed<string> {
  if (!isObj(o) || typeof o.token !== 'string' || o.token === '' || o.token.length > 4096) return fail('no token');
  return { ok: true, value: o.token };
}

/** The gateway's error body (`{"error", "message", "code"}`), if `o` is one. */
export function parseErrorBody(o: unknown): { message: string; code: number } | undefined {
  if (!isObj(o)) return undefined;
  const msg = typeof o.message === 'string' ? o.message : typeof o.error === 'string' ? o.error : undefined;
  if (msg === undefined || typeof o.code !== 'number') return undefined;
  return { message: msg.slice(0, 200), code: o.code };
}

/**
 * One message of a watch stream (`{"result": WatchResponse}` or `{"error": ...}`). `rawEvents`:
 * events are handed over unchecked (kind 'raw-events') for the caller to check one by one.
 */
export function parseWatchMessage(o: unknown, rawEvents = false): Parsed<WatchMessage> {
  if (!isObj(o)) return fail('watch message is not an object');
  if (o.error !== undefined) {
    const e = isObj(o.error) ? o.error : {};
    return { ok: true, value: { kind: 'canceled', compactRevision: 0, reason: typeof e.message === 'string' ? e.message.slice(0, 200) : 'stream error' } };
  }
  const r = o.result;
  if (!isObj(r)) return fail('watch message has no result');
  const compact = int64(r, 'compact_revision');
  if (compact === undefined) return fail('compact_revision is not an int64');
  if (r.canceled === true) {
    const reason = typeof r.cancel_reason === 'string' ? r.cancel_reason.slice(0, 200) : compact > 0 ? 'compacted' : 'canceled';
    return { ok: true, value: { kind: 'canceled', compactRevision: compact, reason } };
  }
  const h = parseHeader(r);
  if (!h.ok) return h;
  if (r.created === true) return { ok: true, value: { kind: 'created', revision: h.value } };
  const raw = r.events ?? [];
  if (!Array.isArray(raw)) return fail('events is not an array');
  if (raw.length === 0) return { ok: true, value: { kind: 'progress', revision: h.value } };
  if (rawEvents) return { ok: true, value: { kind: 'raw-events', revision: h.value, events: raw } };
  const events: WatchEvent[] = [];
  for (const e of raw) {
    const ev = parseWatchEvent(e);
    if (!ev.ok) return ev;
    events.push(ev.value);
  }
  return { ok: true, value: { kind: 'events', revision: h.value, events } };
}

/** One event of a watch message (mvccpb.Event). */
export function parseWatchEvent(e: unknown): Parsed<WatchEvent> {
  if (!isObj(e)) return fail('event is not an object');
  const t = e.type ?? 'PUT';
  if (t !== 'PUT' && t !== 'DELETE') return fail('event type is not PUT or DELETE');
  const kv = parseKv(e.kv);
  if (!kv.ok) return kv;
  return { ok: true, value: { type: t === 'PUT' ? 'put' : 'delete', kv: kv.value } };
}

/** The first key after every key with prefix `p` (etcd's range_end for a prefix). */
export function prefixEnd(p: string): Buffer {
  const b = Buffer.from(p, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const e = Buffer.from(b.subarray(0, i + 1));
      e[i]!++;
      return e;
    }
  }
  return Buffer.from([0]);
}

const enc = (s: string | Buffer): string => Buffer.from(s).toString('base64');

/** A parsed endpoint. */
interface Endpoint {
  url: URL;
  https: boolean;
}

function parseEndpoint(s: string): Endpoint {
  const t = s.trim();
  const withScheme = /^[a-z]+:\/\//i.test(t) ? t : `http://${t}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new EtcdError('protocol', `etcd endpoint "${s}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EtcdError('protocol', `etcd endpoint "${s}": scheme must be http or https`);
  if (url.pathname !== '/' && url.pathname !== '') throw new EtcdError('protocol', `etcd endpoint "${s}" has a path`);
  return { url, https: url.protocol === 'https:' };
}

/** A handle to a running watch. */
export interface WatchHandle {
  /** Stop the watch (closes the stream). */
  close(): void;
}

/** What a watch reports. */
export interface WatchHandlers {
  /** Each message, in order. */
  onMessage(m: WatchMessage): void;
  /**
   * Hand events over unchecked (kind 'raw-events'; check each with {@link parseWatchEvent}), so
   * that a message of thousands of events can be checked in slices instead of all at once.
   */
  rawEvents?: boolean;
  /** The stream failed or ended (not called after close()). */
  onEnd(e: EtcdError): void;
}

/**
 * An etcd v3 client on the JSON gateway. Endpoints are tried in order; the one that answered
 * last is tried first next time. With a username, a token is fetched from /v3/auth/authenticate
 * and fetched again when the server says it is no longer valid.
 */
export class EtcdClient {
  private readonly endpoints: Endpoint[];
  private current = 0;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 8 });
  private readonly httpsAgent: HttpsAgent | undefined;
  private token: string | undefined;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private closed = false;
  private readonly open = new Set<ClientRequest>();

  /** Reads the TLS files now; throws EtcdError('protocol') naming a file it cannot read or an endpoint it cannot parse. */
  constructor(private readonly opts: EtcdClientOptions) {
    if (opts.endpoints.length === 0) throw new EtcdError('protocol', 'no etcd endpoints');
    this.endpoints = opts.endpoints.map(parseEndpoint);
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxBytes = opts.maxResponseBytes ?? MAX_ETCD_RESPONSE_BYTES;
    if (opts.certFile !== undefined && opts.keyFile === undefined) throw new EtcdError('protocol', '--etcd-certfile needs --etcd-keyfile');
    if (opts.keyFile !== undefined && opts.certFile === undefined) throw new EtcdError('protocol', '--etcd-keyfile needs --etcd-certfile');
    if (opts.username !== undefined && opts.password === undefined) throw new EtcdError('protocol', '--etcd-username needs --etcd-password');
    if (this.endpoints.some((e) => e.https) || opts.caFile || opts.certFile) {
      const read = (f: string | undefined, flag: string): Buffer | undefined => {
        if (f === undefined) return undefined;
        try {
          return readFileSync(f);
        } catch (e) {
          throw new EtcdError('protocol', `${flag} ${f}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
        }
      };
      const ca = read(opts.caFile, '--etcd-cafile');
      const cert = read(opts.certFile, '--etcd-certfile');
      const key = read(opts.keyFile, '--etcd-keyfile');
      this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 8, minVersion: 'TLSv1.2', ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) });
    }
  }

  /** The endpoint tried first now (for log lines). */
  get endpoint(): string {
    return this.endpoints[this.current]!.url.origin;
  }

  private send(ep: Endpoint, path: string, body: unknown, stream: boolean): ClientRequest {
    const data = JSON.stringify(body);
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) };
    if (this.token !== undefined && path !== '/v3/auth/authenticate') headers.authorization = this.token;
    const o = {
      method: 'POST', host: ep.url.hostname.replace(/^\[|\]$/g, ''), port: Number(ep.url.port || (ep.https ? 443 : 80)), path, headers,
      agent: stream ? false : ep.https ? this.httpsAgent! : this.httpAgent,
      ...(stream && ep.https ? this.tlsFor() : {}),
    };
    const req = ep.https ? httpsRequest(o) : httpRequest(o);
    this.open.add(req);
    req.on('close', () => this.open.delete(req));
    req.end(data);
    return req;
  }

  /** TLS options for a stream, which gets its own connection (no agent). */
  private tlsFor(): { ca?: Buffer; cert?: Buffer; key?: Buffer; minVersion: 'TLSv1.2' } {
    const o = this.httpsAgent?.options ?? {};
    return { ...(o.ca ? { ca: o.ca as Buffer } : {}), ...(o.cert ? { cert: o.cert as Buffer } : {}), ...(o.key ? { key: o.key as Buffer } : {}), minVersion: 'TLSv1.2' };
  }

  /** One POST to one endpoint: the parsed JSON body and the HTTP status. */
  private once(ep: Endpoint, path: string, body: unknown): Promise<{ status: number; json: unknown }> {
    return new Promise((resolve, reject) => {
      const req = this.send(ep, path, body, false);
      const timer = setTimeout(() => req.destroy(new EtcdError('unreachable', `${ep.url.origin}: no answer in ${this.timeoutMs} ms`)), this.timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof EtcdError ? e : new EtcdError('unreachable', `${ep.url.origin}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      });
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > this.maxBytes) {
            clearTimeout(timer);
            req.destroy();
            reject(new EtcdError('protocol', `${ep.url.origin}${path}: response over ${this.maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (e) => { clearTimeout(timer); reject(new EtcdError('unreachable', `${ep.url.origin}: ${e.message}`)); });
        res.on('end', () => {
          clearTimeout(timer);
          if (n > this.maxBytes) return;
          let json: unknown;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(new EtcdError('protocol', `${ep.url.origin}${path}: HTTP ${res.statusCode}, body is not JSON`));
            return;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
    });
  }

  /**
   * POST `body` to `path` on the first endpoint that answers; an error body becomes an
   * EtcdError('server') with its gRPC code. Re-authenticates once on an auth failure.
   */
  async call(path: string, body: unknown): Promise<unknown> {
    if (this.closed) throw new EtcdError('unreachable', 'client closed');
    if (this.opts.username !== undefined && this.token === undefined && path !== '/v3/auth/authenticate') await this.authenticate();
    for (let attempt = 0; ; attempt++) {
      const r = await this.anyEndpoint(path, body);
      const err = parseErrorBody(r.json);
      if (err === undefined && r.status === 200) return r.json;
      const code = err?.code;
      const authFailed = code === GRPC_UNAUTHENTICATED || (code === GRPC_INVALID_ARGUMENT && /auth token/.test(err?.message ?? ''));
      if (authFailed && this.opts.username !== undefined && attempt === 0 && path !== '/v3/auth/authenticate') {
        this.token = undefined;
        await this.authenticate();
        continue;
      }
      // no leader, overloaded, timed out: passing conditions, retried like an unreachable etcd
      const passing = code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED || (err === undefined && r.status >= 500);
      throw new EtcdError(passing ? 'unreachable' : 'server', `etcd ${path}: ${err?.message ?? `HTTP ${r.status}`}`, code);
    }
  }

  private async anyEndpoint(path: string, body: unknown): Promise<{ status: number; json: unknown }> {
    let last: EtcdError | undefined;
    for (let i = 0; i < this.endpoints.length; i++) {
      const k = (this.current + i) % this.endpoints.length;
      try {
        const r = await this.once(this.endpoints[k]!, path, body);
        this.current = k;
        return r;
      } catch (e) {
        if (!(e instanceof EtcdError) || e.kind !== 'unreachable') throw e;
        last = e;
      }
    }
    throw last ?? new EtcdError('unreachable', 'no endpoint answered');
  }

  private async authenticate(): Promise<void> {
    const j = await this.call('/v3/auth/authenticate', { name: this.opts.username, password: this.opts.password });
    const t = parseAuth(j);
    if (!t.ok) throw new EtcdError('protocol', `etcd authenticate: ${t.reason}`);
    this.token = t.value;
  }

  private static check<T>(what: string, p: Parsed<T>): T {
    if (!p.ok) throw new EtcdError('protocol', `etcd ${what}: ${p.reason}`);
    return p.value;
  }

  /**
   * Read one key, or every key with prefix `key` when `prefix`. `limit`: at most this many keys
   * (the answer's `next` then says where to read on: pass it as `from`, with the first answer's
   * revision as `revision` for one consistent listing in pages).
   */
  async range(key: string, opts: { prefix?: boolean; limit?: number; revision?: number; from?: Buffer } = {}): Promise<RangeResult> {
    const body: Obj = { key: enc(opts.from ?? key) };
    if (opts.prefix) body.range_end = prefixEnd(key).toString('base64');
    if (opts.limit !== undefined) body.limit = String(opts.limit);
    if (opts.revision !== undefined) body.revision = String(opts.revision);
    return EtcdClient.check('range', parseRange(await this.call('/v3/kv/range', body)));
  }

  /** Write a key, bound to etcd lease `lease` ("0" or absent: no lease, the key stays until deleted). */
  async put(key: string, value: string | Buffer, lease = '0'): Promise<number> {
    const body: Obj = { key: enc(key), value: enc(value) };
    if (lease !== '0') body.lease = lease;
    return EtcdClient.check('put', parseHeader(await this.call('/v3/kv/put', body)));
  }

  /** Create a key only if it does not exist (its create_revision is 0); true when created. */
  async create(key: string, value: string | Buffer, lease = '0'): Promise<boolean> {
    const put: Obj = { key: enc(key), value: enc(value) };
    if (lease !== '0') put.lease = lease;
    const body = { compare: [{ key: enc(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' }], success: [{ request_put: put }] };
    return EtcdClient.check('txn', parseTxn(await this.call('/v3/kv/txn', body))).succeeded;
  }

  /** Delete a key (or every key with the prefix). */
  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const body: Obj = { key: enc(key) };
    if (opts.prefix) body.range_end = prefixEnd(key).toString('base64');
    return EtcdClient.check('delete', parseHeader(await this.call('/v3/kv/deleterange', body)));
  }

  /** Grant a lease of `ttl` seconds. */
  async grant(ttl: number): Promise<GrantResult> {
    return EtcdClient.check('lease grant', parseGrant(await this.call('/v3/lease/grant', { TTL: String(ttl) })));
  }

  /** Revoke a lease (its keys are deleted). A lease already gone is not an error. */
  async revoke(id: string): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: id });
    } catch (e) {
      if (e instanceof EtcdError && e.kind === 'server' && /lease not found/.test(e.message)) return;
      throw e;
    }
  }

  /** Compact the key history up to `revision` (tests and tools). */
  async compact(revision: number): Promise<void> {
    await this.call('/v3/kv/compaction', { revision: String(revision), physical: true });
  }

  /**
   * Watch the keys with prefix `prefix` from `startRevision` on. Messages arrive in order on
   * `onMessage`; a failed connection, an unparseable or oversized message, or the stream's end
   * call `onEnd` once. The caller decides to watch again.
   */
  watch(prefix: string, startRevision: number, h: WatchHandlers): WatchHandle {
    let done = false;
    let reauthed = false;
    let req: ClientRequest | undefined;
    const k = this.current;
    const ep = this.endpoints[k]!;
    const end = (e: EtcdError): void => {
      if (done) return;
      done = true;
      req?.destroy();
      // the next watch (and call) tries the next endpoint first
      if (e.kind === 'unreachable' && this.current === k) this.current = (k + 1) % this.endpoints.length;
      h.onEnd(e);
    };
    const start = (): void => {
      if (done) return;
      const body = { create_request: { key: enc(prefix), range_end: prefixEnd(prefix).toString('base64'), start_revision: String(startRevision) } };
      const r = this.send(ep, '/v3/watch', body, true);
      req = r;
      const stale = (): boolean => r !== req; // replaced after a re-authentication
      r.on('socket', (s) => s.setKeepAlive(true, 5000));
      r.on('error', (e) => stale() || end(new EtcdError('unreachable', `${ep.url.origin} watch: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
      r.on('response', (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          res.resume();
          end(new EtcdError('server', `${ep.url.origin} watch: HTTP ${res.statusCode}`));
          return;
        }
        // the message being received, in pieces: a chunk is searched for the end of a line once
        // (a message of thousands of events arrives in many chunks)
        let parts: string[] = [];
        let held = 0;
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (done || stale()) return;
          let from = 0;
          for (let nl = c.indexOf('\n'); nl >= 0 && !done && !stale(); nl = c.indexOf('\n', from)) {
            parts.push(c.slice(from, nl));
            from = nl + 1;
            const line = (parts.length === 1 ? parts[0]! : parts.join('')).trim();
            parts = [];
            held = 0;
            if (line === '') continue;
            let j: unknown;
            try {
              j = JSON.parse(line);
            } catch {
              end(new EtcdError('protocol', `${ep.url.origin} watch: a message is not JSON`));
              return;
            }
            const m = parseWatchMessage(j, h.rawEvents === true);
            if (!m.ok) {
              end(new EtcdError('protocol', `${ep.url.origin} watch: ${m.reason}`));
              return;
            }
            const v = m.value;
            if (v.kind === 'canceled' && this.opts.username !== undefined && !reauthed && /invalid auth token|Unauthenticated/.test(v.reason)) {
              // our token expired (etcd's simple tokens do after --auth-token-ttl idle): fetch a new one, watch again once
              reauthed = true;
              this.token = undefined;
              req = undefined;
              r.destroy();
              this.authenticate().then(start, (e: Error) => end(e instanceof EtcdError ? e : new EtcdError('unreachable', e.message)));
              return;
            }
            h.onMessage(v);
          }
          if (done || stale() || from >= c.length) return;
          parts.push(c.slice(from));
          held += c.length - from;
          if (held > MAX_WATCH_MESSAGE_BYTES) end(new EtcdError('protocol', `${ep.url.origin} watch: a message over ${MAX_WATCH_MESSAGE_BYTES} bytes`));
        });
        res.on('error', (e) => stale() || end(new EtcdError('unreachable', `${ep.url.origin} watch: ${e.message}`)));
        res.on('end', () => stale() || end(new EtcdError('unreachable', `${ep.url.origin} watch: stream ended`)));
      });
    };
    if (this.opts.username !== undefined && this.token === undefined) {
      this.authenticate().then(start, (e: Error) => end(e instanceof EtcdError ? e : new EtcdError('unreachable', e.message)));
    } else {
      start();
    }
    return { close: () => { done = true; req?.destroy(); } };
  }

  /** Close connections; calls after this fail. */
  close(): void {
    this.closed = true;
    for (const r of this.open) r.destroy();
    this.httpAgent.destroy();
    this.httpsAgent?.destroy();
  }
}
