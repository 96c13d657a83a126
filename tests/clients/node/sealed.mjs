// node-redis 5/6 and ioredis 5/6 through a sealing respseal (sess:*): what
// each writes is ciphertext in Redis, what it reads is plaintext — single
// commands, pipelines, transactions, MGET, GETEX, GETDEL, SET ... GET.
// Usage: node sealed.mjs PROXY_PORT REDIS_PORT
import { createRequire } from 'node:module';
import { isDeepStrictEqual, inspect } from 'node:util';
const require = createRequire(import.meta.url);
const [proxyPort, redisPort] = process.argv.slice(2).map(Number);
const IORedis5 = require('ioredis5');
const IORedis6 = require('ioredis6');
const direct = new IORedis5(redisPort);

function same(name, got, want) {
  if (!isDeepStrictEqual(got, want)) throw new Error(`${name}: got ${inspect(got)}, want ${inspect(want)}`);
}

async function sealedInRedis(name, key, plain) {
  const raw = await direct.getBuffer(key);
  if (!raw) throw new Error(`${name}: ${key} missing in Redis`);
  if (!(raw[0] === 0 && raw[1] === 0x52 && raw[2] === 0x45 && raw[3] === 1)) {
    throw new Error(`${name}: ${key} not sealed in Redis`);
  }
  if (raw.includes(Buffer.from(plain))) throw new Error(`${name}: ${key} holds its plaintext in Redis`);
}

for (const mod of ['redis5', 'redis6']) {
  const p = `sess:${mod}:`;
  const c = require(mod).createClient({ url: `redis://127.0.0.1:${proxyPort}` });
  c.on('error', () => {});
  await c.connect();
  same(mod, await c.set(p + 'a', 'alpha-secret'), 'OK');
  same(mod, await c.get(p + 'a'), 'alpha-secret');
  await sealedInRedis(mod, p + 'a', 'alpha-secret');
  // Pipelined (node-redis pipelines commands sent in the same tick).
  const got = await Promise.all([
    c.set(p + 'b', 'beta-secret'),
    c.get(p + 'b'),
    c.mGet([p + 'a', 'plain:node', p + 'b']),
    c.getEx(p + 'a', { EX: 100 }),
    c.set(p + 'a', 'alpha2-secret', { GET: true }),
    c.getDel(p + 'b'),
  ]);
  same(mod, got, ['OK', 'beta-secret', ['alpha-secret', null, 'beta-secret'], 'alpha-secret', 'alpha-secret', 'beta-secret']);
  await sealedInRedis(mod, p + 'a', 'alpha2-secret');
  const tx = await c.multi().set(p + 'c', 'gamma-secret').get(p + 'c').mGet([p + 'a', p + 'c']).exec();
  same(mod, tx, ['OK', 'gamma-secret', ['alpha2-secret', 'gamma-secret']]);
  await sealedInRedis(mod, p + 'c', 'gamma-secret');
  await c.quit();
  console.log(`${mod}: writes sealed in Redis, reads plaintext (pipeline, MULTI, MGET, GETEX, GETDEL, SET GET)`);
}

for (const [name, Cls] of [['ioredis5', IORedis5], ['ioredis6', IORedis6]]) {
  const p = `sess:${name}:`;
  const c = new Cls(proxyPort);
  same(name, await c.set(p + 'a', 'alpha-secret'), 'OK');
  same(name, await c.get(p + 'a'), 'alpha-secret');
  await sealedInRedis(name, p + 'a', 'alpha-secret');
  const piped = await c
    .pipeline()
    .set(p + 'b', 'beta-secret')
    .get(p + 'b')
    .mget(p + 'a', 'plain:node', p + 'b')
    .getex(p + 'a', 'EX', 100)
    .set(p + 'a', 'alpha2-secret', 'GET')
    .getdel(p + 'b')
    .exec();
  same(name, piped.map(([err, v]) => (err ? String(err) : v)), [
    'OK', 'beta-secret', ['alpha-secret', null, 'beta-secret'], 'alpha-secret', 'alpha-secret', 'beta-secret',
  ]);
  await sealedInRedis(name, p + 'a', 'alpha2-secret');
  const tx = await c.multi().set(p + 'c', 'gamma-secret').get(p + 'c').mget(p + 'a', p + 'c').exec();
  same(name, tx.map(([err, v]) => (err ? String(err) : v)), ['OK', 'gamma-secret', ['alpha2-secret', 'gamma-secret']]);
  await sealedInRedis(name, p + 'c', 'gamma-secret');
  c.disconnect();
  console.log(`${name}: writes sealed in Redis, reads plaintext (pipeline, MULTI, MGET, GETEX, GETDEL, SET GET)`);
}
direct.disconnect();
