// node-redis (5, 6) and ioredis (5, 6) transactions through respseal
// (sealing sess:*): a command respseal refuses while queueing discards the
// whole transaction (EXECABORT), as a Redis queue-time error does.
// Usage: node execabort.mjs PROXY_PORT REDIS_PORT
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const [proxyPort, redisPort] = process.argv.slice(2).map(Number);
const url = `redis://127.0.0.1:${proxyPort}`;
const IORedis5 = require('ioredis5');
const IORedis6 = require('ioredis6');
const direct = new IORedis5(redisPort);

async function leftBehind() {
  return direct.exists('tx:a', 'tx:b');
}

async function check(name, run) {
  await direct.del('tx:a', 'tx:b', 'sess:tx');
  let err = null;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  // node-redis reports the queue-time error itself, ioredis EXECABORT:
  // either way the transaction must be discarded as a whole.
  if (!err || !/EXECABORT|respseal/.test(String(err.message || err))) {
    throw new Error(`${name}: expected EXECABORT, got ${err ? err.message : 'success'}`);
  }
  if ((await leftBehind()) !== 0) throw new Error(`${name}: discarded transaction left writes behind`);
  console.log(`${name}: EXECABORT (${String(err.message).split('\n')[0]})`);
}

for (const [name, mod] of [['node-redis 5', 'redis5'], ['node-redis 6', 'redis6']]) {
  const c = require(mod).createClient({ url });
  c.on('error', () => {});
  await c.connect();
  await check(name, () => c.multi().set('tx:a', '1').append('sess:tx', 'y').set('tx:b', '2').exec());
  const ok = await c.multi().set('sess:tx', 'secret').get('sess:tx').exec();
  if (ok[1] !== 'secret') throw new Error(`${name}: sealed GET inside MULTI gave ${ok[1]}`);
  await c.quit();
}
for (const [name, Cls] of [['ioredis 5', IORedis5], ['ioredis 6', IORedis6]]) {
  const c = new Cls(proxyPort);
  await check(name, () => c.multi().set('tx:a', '1').append('sess:tx', 'y').set('tx:b', '2').exec());
  const ok = await c.multi().set('sess:tx', 'secret').get('sess:tx').exec();
  if (ok[1][1] !== 'secret') throw new Error(`${name}: sealed GET inside MULTI gave ${JSON.stringify(ok)}`);
  c.disconnect();
}
const raw = await direct.getBuffer('sess:tx');
if (!raw || raw[0] !== 0 || raw[1] !== 0x52) throw new Error('not sealed inside MULTI');
direct.disconnect();
console.log('node clients: EXECABORT for refused commands');
