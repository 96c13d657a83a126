// The express-session view counter, with its sessions in Redis through respseal.
// respseal seals every `sess:*` value before it reaches Redis and opens it on
// the way back, so this app reads and writes plain JSON sessions as usual.
import express from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';

const {
  REDIS_URL = 'redis://127.0.0.1:6380', // respseal, in front of Redis on 6379
  REDIS_CLIENT = 'redis6', // redis6 = node-redis 6 (`redis`), redis5 = node-redis 5 (`redis5`)
  PORT = '3000',
  HOST = '127.0.0.1', // 0.0.0.0 in a container
  SESSION_SECRET = 'keyboard cat',
  SESSION_CANARY = 'CANARY-plaintext-session-data', // must never show up in Redis itself
} = process.env;

const modules = { redis6: 'redis', redis5: 'redis5' };
if (!(REDIS_CLIENT in modules)) throw new Error(`REDIS_CLIENT must be redis6 or redis5, not ${REDIS_CLIENT}`);
const { createClient, createSentinel } = await import(modules[REDIS_CLIENT]);

// REDIS_SENTINEL=host:port,host:port (service mymaster): node-redis's own
// Sentinel client straight to Redis, without respseal (the tests compare
// what a failover costs each way).
const { REDIS_SENTINEL } = process.env;
const redisClient = REDIS_SENTINEL
  ? createSentinel({
      name: 'mymaster',
      sentinelRootNodes: REDIS_SENTINEL.split(',').map((n) => {
        const [host, port] = n.split(':');
        return { host, port: Number(port) };
      }),
    })
  : createClient({ url: REDIS_URL });
redisClient.on('error', (err) => console.error('redis client error:', err));
await redisClient.connect();
if (REDIS_SENTINEL) {
  console.log(`${REDIS_CLIENT} sentinel client connected through ${REDIS_SENTINEL}`);
} else {
  // node-redis 6 speaks RESP3 by default (HELLO 3); node-redis 5 stays on RESP2.
  const { resp } = await redisClient.clientInfo();
  console.log(`${REDIS_CLIENT} connected to ${REDIS_URL} (CLIENT INFO resp=${resp})`);
}

const app = express();

app.use(
  session({
    store: new RedisStore({ client: redisClient, prefix: 'sess:' }), // the keys respseal seals
    resave: false,
    saveUninitialized: false,
    secret: SESSION_SECRET,
  }),
);

app.get('/', (req, res) => {
  if (req.session.views) {
    req.session.views++;
  } else {
    req.session.views = 1;
    req.session.canary = SESSION_CANARY;
  }
  res.type('text').send(`Counter: ${req.session.views}`);
});

app.listen(Number(PORT), HOST, (err) => {
  if (err) throw err;
  console.log(`listening on http://${HOST}:${PORT}`);
});
