#!/usr/bin/env node
// Real-client compatibility check for respseal (or plain Redis).
//
// usage: node check.mjs --port P [--host H] --client redis5|redis6|ioredis5|ioredis6
//
// Connects with the chosen client's default settings (so its normal handshake
// runs: HELLO 3 where that client does it, CLIENT SETINFO, and SELECT because
// the URL names db 2), runs a fixed set of commands and asserts every reply.
// Prints "ok <client> resp=N" and exits 0 on success; prints
// "FAIL <client> [<step>]: <reason>" and exits 1 on any failure. Every wait has
// a deadline and the whole script is bounded by OVERALL_MS.

import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual, inspect } from 'node:util';

const require = createRequire(import.meta.url);

const OVERALL_MS = 20_000;
const STEP_MS = 6_000;
const DB = 2;

// Protocol each client ends up on with its default settings.
//  redis5  : node-redis 5 only sends HELLO when options.RESP is set -> RESP2.
//  redis6  : node-redis 6 DEFAULT_RESP = 3 -> HELLO 3.
//  ioredis5: no HELLO at all -> RESP2.
//  ioredis6: DEFAULT_REDIS_OPTIONS.protocol = 3 -> HELLO 3 (silently downgrades
//            to RESP2 if HELLO is refused; that downgrade must fail this check).
const EXPECTED_RESP = { redis5: 2, redis6: 3, ioredis5: 2, ioredis6: 3 };

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const out = { host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a === '--host') out.host = next();
    else if (a === '--client') out.client = next();
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) usage('--port is required');
  if (!(out.client in EXPECTED_RESP)) usage(`--client must be one of ${Object.keys(EXPECTED_RESP).join('|')}`);
  return out;
}

function usage(msg) {
  if (msg) console.error(`check.mjs: ${msg}`);
  console.error('usage: node check.mjs --port P [--host H] --client redis5|redis6|ioredis5|ioredis6');
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const CLIENT = args.client;
const URL_ = `redis://${args.host.includes(':') ? `[${args.host}]` : args.host}:${args.port}/${DB}`;

// ---------------------------------------------------------------- harness
let currentStep = 'init';
const clientErrors = [];

function fail(msg) {
  const extra = clientErrors.length ? `\n  client error events: ${clientErrors.slice(-3).join(' | ')}` : '';
  console.error(`FAIL ${CLIENT} [${currentStep}]: ${msg}${extra}`);
  process.exit(1);
}

const overall = setTimeout(() => fail(`overall timeout of ${OVERALL_MS} ms exceeded`), OVERALL_MS);
overall.unref();
process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${e?.stack ?? e}`));
process.on('uncaughtException', (e) => fail(`uncaught exception: ${e?.stack ?? e}`));

// Failures of our own assertions/deadlines: reported without a stack trace.
class CheckError extends Error {}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new CheckError(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function step(name, fn) {
  currentStep = name;
  try {
    await withTimeout(Promise.resolve().then(fn), STEP_MS, name);
  } catch (e) {
    fail(e instanceof CheckError ? e.message : (e?.stack ?? String(e)));
  }
}

const show = (v) => inspect(v, { depth: 5, breakLength: Infinity, maxStringLength: 300 });

function eq(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new CheckError(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

function check(cond, what) {
  if (!cond) throw new CheckError(what);
}

function isErr(v) {
  return v instanceof Error;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Normalise a hash reply to a plain {field: value} object, whatever shape the
// client produced (object, null-prototype object, Map, flat array).
function hashToObject(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), String(x)]));
  if (Array.isArray(v)) {
    check(v.length % 2 === 0, `flat hash reply has odd length: ${show(v)}`);
    const o = {};
    for (let i = 0; i < v.length; i += 2) o[String(v[i])] = String(v[i + 1]);
    return o;
  }
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
  throw new CheckError(`not a hash reply: ${show(v)}`);
}

// "k1=v1 k2=v2 ..." (CLIENT INFO) -> object
function parseClientInfo(s) {
  const line = String(s).trim().split('\n')[0];
  const o = {};
  for (const part of line.split(' ')) {
    const i = part.indexOf('=');
    if (i > 0) o[part.slice(0, i)] = part.slice(i + 1);
  }
  return o;
}

// ---------------------------------------------------------------- adapters
// One adapter per client family exposes the same operations through each
// client's own native API (not raw sendCommand where a native method exists).

function nodeRedisAdapter(pkg) {
  const m = require(pkg);
  const camel = { rpush: 'rPush', lrange: 'lRange', hset: 'hSet', hget: 'hGet', incrby: 'incrBy', hincrby: 'hIncrBy' };
  const method = (name) => camel[name] ?? name;
  const track = (c, label) => {
    c.on('error', (e) => clientErrors.push(`${label}: ${e?.message ?? e}`));
    return c;
  };
  return {
    family: 'node-redis',
    version: require(`${pkg}/package.json`).version,
    async connect() {
      const c = track(m.createClient({ url: URL_ }), 'main');
      await c.connect();
      return c;
    },
    async duplicate(c, label) {
      const d = track(c.duplicate(), label);
      await d.connect();
      return d;
    },
    ping: (c) => c.ping(),
    set: (c, k, v) => c.set(k, v),
    get: (c, k) => c.get(k),
    getBuffer: (c, k) => c.withTypeMapping({ [m.RESP_TYPES.BLOB_STRING]: Buffer }).get(k),
    mget: (c, keys) => c.mGet(keys),
    hset: (c, k, obj) => c.hSet(k, obj),
    hgetall: (c, k) => c.hGetAll(k),
    rawHgetall: (c, k) => c.sendCommand(['HGETALL', k]),
    incr: (c, k) => c.incr(k),
    expire: (c, k, s) => c.expire(k, s),
    ttl: (c, k) => c.ttl(k),
    del: (c, keys) => c.del(keys),
    exists: (c, keys) => c.exists(keys),
    lpush: (c, k, v) => c.lPush(k, v),
    publish: (c, ch, msg) => c.publish(ch, msg),
    info: (c, section) => c.info(section),
    clientSetName: (c, n) => c.clientSetName(n),
    clientGetName: (c) => c.clientGetName(),
    clientInfo: async (c) => String(await c.sendCommand(['CLIENT', 'INFO'])),
    // Burst: every command issued in the same tick without awaiting; node-redis
    // writes them as one pipeline. Returns each reply or its Error, in order.
    async burst(c, cmds) {
      const ps = cmds.map(([name, ...a]) => c[method(name)](...a));
      const settled = await Promise.allSettled(ps);
      return settled.map((s) => (s.status === 'fulfilled' ? s.value : s.reason));
    },
    // Explicit pipeline (no MULTI): multi() builder + execAsPipeline().
    async pipeline(c, cmds) {
      let b = c.multi();
      for (const [name, ...a] of cmds) b = b[method(name)](...a);
      return b.execAsPipeline();
    },
    async transaction(c, cmds) {
      let b = c.multi();
      for (const [name, ...a] of cmds) b = b[method(name)](...a);
      return b.exec();
    },
    // WATCH on conn `w`, `mutate()` from elsewhere, then MULTI/EXEC on `w`.
    // Returns null when EXEC was aborted by the watch.
    async watchedExec(w, key, mutate) {
      await w.watch(key);
      await mutate();
      try {
        return await w.multi().get(key).exec();
      } catch (e) {
        if (e instanceof m.WatchError) return null;
        throw e;
      }
    },
    async subscribe(s, ch, onMessage) {
      await s.subscribe(ch, (msg, channel) => onMessage(channel, msg));
    },
    unsubscribe: (s, ch) => s.unsubscribe(ch),
    async blpop(c, k, timeoutSec) {
      const r = await c.blPop(k, timeoutSec);
      return r === null ? null : [r.key, r.element];
    },
    // What the client itself believes it negotiated: node-redis gives a RESP3
    // map for a raw HGETALL as an object, a RESP2 reply as a flat array.
    clientSideProtocol: async (c, hashKey) => {
      const raw = await c.sendCommand(['HGETALL', hashKey]);
      return Array.isArray(raw) ? 2 : 3;
    },
    close: async (c) => {
      if (c.isOpen) await c.close();
    },
  };
}

function ioredisAdapter(pkg) {
  const Redis = require(pkg).default;
  const track = (c, label) => {
    c.on('error', (e) => clientErrors.push(`${label}: ${e?.message ?? e}`));
    return c;
  };
  const waitReady = (c) =>
    c.status === 'ready'
      ? Promise.resolve()
      : new Promise((res, rej) => {
          c.once('ready', res);
          c.once('end', () => rej(new Error('connection ended before ready')));
        });
  const pipeResults = (rs) => rs.map(([err, v]) => (err ? err : v));
  return {
    family: 'ioredis',
    version: require(`${pkg}/package.json`).version,
    async connect() {
      const c = track(new Redis(URL_), 'main');
      await waitReady(c);
      return c;
    },
    async duplicate(c, label) {
      const d = track(c.duplicate(), label);
      await waitReady(d);
      return d;
    },
    ping: (c) => c.ping(),
    set: (c, k, v) => c.set(k, v),
    get: (c, k) => c.get(k),
    getBuffer: (c, k) => c.getBuffer(k),
    mget: (c, keys) => c.mget(keys),
    hset: (c, k, obj) => c.hset(k, obj),
    hgetall: (c, k) => c.hgetall(k),
    rawHgetall: (c, k) => c.call('HGETALL', k),
    incr: (c, k) => c.incr(k),
    expire: (c, k, s) => c.expire(k, s),
    ttl: (c, k) => c.ttl(k),
    del: (c, keys) => c.del(...keys),
    exists: (c, keys) => c.exists(...keys),
    lpush: (c, k, v) => c.lpush(k, v),
    publish: (c, ch, msg) => c.publish(ch, msg),
    info: (c, section) => c.info(section),
    clientSetName: (c, n) => c.client('SETNAME', n),
    clientGetName: (c) => c.client('GETNAME'),
    clientInfo: async (c) => String(await c.client('INFO')),
    async burst(c, cmds) {
      const ps = cmds.map(([name, ...a]) => c[name](...a));
      const settled = await Promise.allSettled(ps);
      return settled.map((s) => (s.status === 'fulfilled' ? s.value : s.reason));
    },
    async pipeline(c, cmds) {
      let p = c.pipeline();
      for (const [name, ...a] of cmds) p = p[name](...a);
      return pipeResults(await p.exec());
    },
    async transaction(c, cmds) {
      let p = c.multi();
      for (const [name, ...a] of cmds) p = p[name](...a);
      const rs = await p.exec();
      check(rs !== null, 'EXEC returned null (transaction aborted) without any WATCH');
      return pipeResults(rs);
    },
    async watchedExec(w, key, mutate) {
      await w.watch(key);
      await mutate();
      const rs = await w.multi().get(key).exec();
      return rs === null ? null : pipeResults(rs);
    },
    async subscribe(s, ch, onMessage) {
      s.on('message', (channel, msg) => onMessage(channel, msg));
      const n = await s.subscribe(ch);
      check(n === 1, `SUBSCRIBE reply count: expected 1, got ${show(n)}`);
    },
    unsubscribe: (s, ch) => s.unsubscribe(ch),
    blpop: (c, k, timeoutSec) => c.blpop(k, timeoutSec),
    // ioredis records the protocol its handshake settled on (v6 downgrades to
    // 2 if HELLO 3 is refused). v5 has no such field: it never sends HELLO.
    clientSideProtocol: async (c) => c.condition?.protocol ?? 2,
    close: async (c) => {
      if (c.status === 'end') return;
      try {
        await withTimeout(c.quit(), 2000, 'QUIT');
      } catch {
        c.disconnect();
      }
    },
  };
}

const A = CLIENT.startsWith('ioredis') ? ioredisAdapter(CLIENT) : nodeRedisAdapter(CLIENT);
const EXPECT = EXPECTED_RESP[CLIENT];

// ---------------------------------------------------------------- the checks
const tag = `${randomBytes(6).toString('hex')}`;
const base = `rsck:${CLIENT}:${tag}`;
const K = (s) => `${base}:${s}`;
const createdKeys = new Set();
const key = (s) => {
  const k = K(s);
  createdKeys.add(k);
  return k;
};

// binary-ish bytes: NUL, 0x7f-0xff, CR/LF, RESP-looking fragments, invalid
// UTF-8, plus unicode text and random bytes.
const BIN_VALUE = Buffer.concat([
  Buffer.from([0x00, 0x01, 0x02, 0x7f, 0x80, 0xc3, 0x28, 0xfe, 0xff, 0x0d, 0x0a, 0x00]),
  Buffer.from('\r\n$-1\r\n*2\r\n+OK\r\n_\r\n', 'latin1'),
  Buffer.from('héllo wörld ☃ 日本語 🚀', 'utf8'),
  randomBytes(32),
]);
const UNI_VALUE = `ünïcødé ☃ 日本語 🚀 ${tag} \u0000 end`;

let main, sub, blk, watcher;
let resp = null;

await step('connect', async () => {
  main = await A.connect();
});

await step('PING', async () => {
  eq(await A.ping(main), 'PONG', 'PING');
});

await step('SET/GET binary + unicode', async () => {
  const kb = key('bin');
  const ku = key('uni');
  eq(await A.set(main, kb, BIN_VALUE), 'OK', 'SET binary');
  const got = await A.getBuffer(main, kb);
  check(Buffer.isBuffer(got), `GET (buffer) returned ${show(got)}`);
  check(got.equals(BIN_VALUE), `GET binary mismatch: sent ${BIN_VALUE.toString('hex')}, got ${got.toString('hex')}`);
  eq(await A.set(main, ku, UNI_VALUE), 'OK', 'SET unicode');
  eq(await A.get(main, ku), UNI_VALUE, 'GET unicode');
  eq(await A.get(main, K('missing')), null, 'GET missing key');
});

await step('MGET with a missing key', async () => {
  const k1 = key('m1');
  const k2 = key('m2');
  await A.set(main, k1, 'one');
  await A.set(main, k2, 'two ☃');
  eq(await A.mget(main, [k1, K('missing'), k2]), ['one', null, 'two ☃'], 'MGET');
});

await step('HSET/HGETALL', async () => {
  const h = key('hash');
  const obj = { f1: 'v1', 'fïeld ☃': 'välue 🚀', empty: '', num: '42' };
  eq(await A.hset(main, h, obj), 4, 'HSET new fields');
  const got = await A.hgetall(main, h);
  check(got && typeof got === 'object' && !Array.isArray(got), `HGETALL should give an object/map, got ${show(got)}`);
  eq(hashToObject(got), obj, 'HGETALL');
  const empty = await A.hgetall(main, K('missing-hash'));
  eq(hashToObject(empty), {}, 'HGETALL of missing key');
});

// 100 commands with replies known in advance.
function hundredCommands(prefix) {
  const cmds = [];
  const expected = [];
  const push = (cmd, exp) => {
    cmds.push(cmd);
    expected.push(exp);
  };
  const ctr = key(`${prefix}:ctr`);
  const list = key(`${prefix}:list`);
  const hash = key(`${prefix}:h`);
  for (let i = 0; i < 16; i++) {
    const k = key(`${prefix}:s${i}`);
    push(['set', k, `val-${i}-☃`], 'OK');
    push(['get', k], `val-${i}-☃`);
    push(['incr', ctr], i + 1);
    push(['rpush', list, `e${i}`], i + 1);
    push(['hset', hash, `f${i}`, `${i}`], 1);
    push(['hget', hash, `f${i}`], `${i}`);
  }
  // 96 so far
  push(['lrange', list, 0, 2], ['e0', 'e1', 'e2']);
  push(['exists', ctr], 1);
  push(['get', K(`${prefix}:nope`)], null);
  push(['ping'], 'PONG');
  return { cmds, expected };
}

function checkReplies(got, expected, what) {
  check(Array.isArray(got), `${what}: expected an array of replies, got ${show(got)}`);
  eq(got.length, expected.length, `${what}: number of replies`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const g = got[i];
    if (e instanceof RegExp) {
      check(isErr(g) && e.test(g.message), `${what}: reply #${i} expected error ${e}, got ${show(g)}`);
    } else if (isErr(g)) {
      throw new CheckError(`${what}: reply #${i} expected ${show(e)}, got error ${g.message}`);
    } else {
      eq(g, e, `${what}: reply #${i}`);
    }
  }
}

await step('pipeline of 100 commands', async () => {
  const { cmds, expected } = hundredCommands('pipe');
  check(cmds.length === 100, `internal: ${cmds.length} commands`);
  checkReplies(await A.pipeline(main, cmds), expected, 'pipeline');
});

await step('burst of 100 un-awaited commands with an error in the middle', async () => {
  const { cmds, expected } = hundredCommands('burst');
  const notInt = key('burst:notint');
  cmds.splice(50, 0, ['set', notInt, 'abc'], ['incr', notInt]);
  expected.splice(50, 0, 'OK', /not an integer/);
  checkReplies(await A.burst(main, cmds), expected, 'burst');
});

await step('MULTI/EXEC transaction', async () => {
  const k = key('tx');
  const r = await A.transaction(main, [
    ['set', k, '10'],
    ['incr', k],
    ['incrby', k, 5],
    ['get', k],
    ['expire', k, 1000],
    ['ttl', k],
  ]);
  checkReplies(r, ['OK', 11, 16, '16', 1, 1000], 'MULTI/EXEC');
});

await step('WATCH + conflicting write aborts EXEC', async () => {
  const k = key('watched');
  await A.set(main, k, 'before');
  watcher = await A.duplicate(main, 'watcher');
  const r = await A.watchedExec(watcher, k, () => A.set(main, k, 'changed'));
  eq(r, null, 'EXEC after WATCHed key changed');
  eq(await A.get(main, k), 'changed', 'value after aborted EXEC');
});

await step('INCR', async () => {
  const k = key('counter');
  eq(await A.incr(main, k), 1, 'INCR new key');
  eq(await A.incr(main, k), 2, 'INCR again');
  const s = key('notint');
  await A.set(main, s, 'not a number');
  let err = null;
  try {
    await A.incr(main, s);
  } catch (e) {
    err = e;
  }
  check(err && /not an integer/.test(err.message), `INCR on a string should fail with "not an integer", got ${show(err)}`);
});

await step('EXPIRE/TTL', async () => {
  const k = key('ttl');
  await A.set(main, k, 'x');
  eq(await A.ttl(main, k), -1, 'TTL without expiry');
  eq(await A.expire(main, k, 100), 1, 'EXPIRE');
  const t = await A.ttl(main, k);
  check(typeof t === 'number' && t > 90 && t <= 100, `TTL after EXPIRE 100: got ${show(t)}`);
  eq(await A.ttl(main, K('missing')), -2, 'TTL missing key');
  eq(await A.expire(main, K('missing'), 100), 0, 'EXPIRE missing key');
});

await step('DEL', async () => {
  const a = key('del-a');
  const b = key('del-b');
  await A.set(main, a, '1');
  await A.set(main, b, '2');
  eq(await A.del(main, [a, b, K('missing')]), 2, 'DEL count');
  eq(await A.exists(main, [a, b]), 0, 'EXISTS after DEL');
  eq(await A.get(main, a), null, 'GET after DEL');
});

await step('pub/sub round trip', async () => {
  const ch = K('chan');
  const payload = `hello ☃ ${tag} \r\n*1\r\n`;
  sub = await A.duplicate(main, 'subscriber');
  let gotResolve;
  const got = new Promise((r) => (gotResolve = r));
  await A.subscribe(sub, ch, (channel, msg) => gotResolve([String(channel), String(msg)]));
  const receivers = await A.publish(main, ch, payload);
  eq(receivers, 1, 'PUBLISH receiver count');
  const m = await withTimeout(got, 3000, 'pub/sub message');
  eq(m, [ch, payload], 'received message');
  await A.unsubscribe(sub, ch);
});

async function blockedClients() {
  const info = String(await A.info(main, 'clients'));
  const m = /blocked_clients:(\d+)/.exec(info);
  check(m, `INFO clients has no blocked_clients: ${show(info)}`);
  return Number(m[1]);
}

await step('BLPOP answered by LPUSH from another connection', async () => {
  const k = key('blist');
  blk = await A.duplicate(main, 'blocking');
  const before = await blockedClients();
  const popped = A.blpop(blk, k, 4);
  popped.catch(() => {}); // observed below
  // Wait (with a deadline) until the server really has the BLPOP blocked.
  const deadline = Date.now() + 3000;
  while ((await blockedClients()) <= before) {
    check(Date.now() < deadline, 'BLPOP never showed up as blocked (INFO clients blocked_clients did not rise)');
    await sleep(25);
  }
  eq(await A.lpush(main, k, 'wake ☃'), 1, 'LPUSH');
  eq(await withTimeout(popped, 3000, 'BLPOP reply'), [k, 'wake ☃'], 'BLPOP');
  eq(await A.blpop(blk, K('empty-list'), 0.1), null, 'BLPOP timeout on empty list');
});

await step('CLIENT SETNAME/GETNAME', async () => {
  const n = `respseal-check-${CLIENT}-${tag}`;
  eq(await A.clientSetName(main, n), 'OK', 'CLIENT SETNAME');
  eq(await A.clientGetName(main), n, 'CLIENT GETNAME');
  eq(parseClientInfo(await A.clientInfo(main)).name, n, 'CLIENT INFO name=');
});

await step('INFO server', async () => {
  const info = String(await A.info(main, 'server'));
  check(/^redis_version:\d+\.\d+/m.test(info), `INFO server has no redis_version: ${show(info.slice(0, 200))}`);
});

await step('protocol version', async () => {
  const ci = parseClientInfo(await A.clientInfo(main));
  check('resp' in ci, `CLIENT INFO has no resp= field: ${show(ci)}`);
  resp = Number(ci.resp);
  eq(resp, EXPECT, `CLIENT INFO resp= (protocol ${CLIENT} defaults to)`);
  eq(Number(ci.db), DB, 'CLIENT INFO db= (URL asked for db 2, so SELECT 2 ran)');
  const h = key('proto-h');
  await A.hset(main, h, { a: '1' });
  eq(await A.clientSideProtocol(main, h), EXPECT, 'protocol seen by the client library');
  for (const [label, c] of [['blocking', blk], ['watcher', watcher]]) {
    const dci = parseClientInfo(await A.clientInfo(c));
    eq(Number(dci.resp), EXPECT, `CLIENT INFO resp= on the ${label} duplicate connection`);
    eq(Number(dci.db), DB, `CLIENT INFO db= on the ${label} duplicate connection`);
  }
});

await step('cleanup', async () => {
  if (createdKeys.size) await A.del(main, [...createdKeys]);
  for (const c of [sub, blk, watcher, main]) if (c) await A.close(c);
});

console.log(`ok ${CLIENT} resp=${resp}`);
process.exit(0);
