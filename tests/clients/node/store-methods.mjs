#!/usr/bin/env node
// connect-redis's whole RedisStore API through respseal (or plain Redis),
// with node-redis 6: set, get, touch, destroy, and the methods that walk
// every key with SCAN (length, ids, all, clear), which behind a Redis
// Cluster must see each master's keys exactly once.
//
// usage: node store-methods.mjs --port P [--sessions N]
// Prints "ok store-methods N" and exits 0, or "FAIL <step>: <reason>" and 1.
// Bounded by OVERALL_MS.

import { createClient } from 'redis6';
import { RedisStore } from 'connect-redis';
import { isDeepStrictEqual } from 'node:util';

const OVERALL_MS = 30_000;
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const port = Number(opt('--port'));
const n = Number(opt('--sessions', '40'));
let step = 'connect';
const fail = (why) => {
  console.error(`FAIL ${step}: ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`overall timeout of ${OVERALL_MS} ms`), OVERALL_MS).unref();
process.on('unhandledRejection', (e) => fail(e?.stack ?? String(e)));
const eq = (a, b, what) => {
  if (!isDeepStrictEqual(a, b)) fail(`${what}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`);
};

const client = createClient({ url: `redis://127.0.0.1:${port}` });
client.on('error', (e) => console.error('client error:', e.message));
await client.connect();
// scanCount 7: many SCAN pages per master.
const store = new RedisStore({ client, prefix: 'sess:', scanCount: 7 });
const cookie = { originalMaxAge: 600000, expires: new Date(Date.now() + 600000).toISOString() };
const ids = Array.from({ length: n }, (_, i) => `sid-${i}-${Math.random().toString(36).slice(2, 8)}`);

step = 'set';
await Promise.all(ids.map((id, i) => store.set(id, { cookie, user: `user${i}@example.com`, n: i })));
step = 'get';
const one = await store.get(ids[3]);
eq(one?.user, 'user3@example.com', 'a session read back');
step = 'length';
eq(await store.length(), n, 'length');
step = 'ids';
eq((await store.ids()).sort(), [...ids].sort(), 'ids');
step = 'all';
const all = await store.all();
eq(all.length, n, 'all: count');
eq(all.map((s) => s.id).sort(), [...ids].sort(), 'all: ids');
for (const s of all) {
  if (s.user !== `user${s.n}@example.com`) fail(`all: session ${s.id} holds ${JSON.stringify(s)}`);
}
step = 'touch';
await store.touch(ids[0], { cookie });
step = 'destroy';
await store.destroy(ids[0]);
eq(await store.get(ids[0]), null, 'a destroyed session');
eq(await store.length(), n - 1, 'length after destroy');
step = 'clear';
await store.clear();
eq(await store.length(), 0, 'length after clear');
await client.quit();
console.log(`ok store-methods ${n}`);
