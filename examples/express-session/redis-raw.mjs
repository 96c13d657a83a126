#!/usr/bin/env node
// Snapshot every key of a Redis (or respseal) endpoint as raw bytes, for e2e.sh.
//
// usage: node redis-raw.mjs PORT OUTDIR [HOST]
//
// Speaks RESP2 over a plain socket (no client library, so nothing decodes or
// re-encodes the values) and, for every key from KEYS *, writes
//   OUTDIR/<i>.get   the exact bytes GET returned (absent when GET was nil or the key is not a string)
//   OUTDIR/<i>.dump  the exact bytes DUMP returned (absent when nil)
//   OUTDIR/keys.tsv  one line per key: i TAB key TAB type TAB pttl
// Exits non-zero on any error reply or after 5 s.
import { connect } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [port, outdir, host = '127.0.0.1'] = process.argv.slice(2);
if (!port || !outdir) {
  console.error('usage: node redis-raw.mjs PORT OUTDIR [HOST]');
  process.exit(2);
}
setTimeout(() => {
  console.error('redis-raw: timed out');
  process.exit(1);
}, 5000).unref();

const sock = connect(Number(port), host);
let buf = Buffer.alloc(0);
const waiting = [];
sock.on('error', (e) => {
  console.error(`redis-raw: ${e.message}`);
  process.exit(1);
});
sock.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  for (;;) {
    const r = parse(buf, 0);
    if (!r) break;
    buf = buf.subarray(r.end);
    waiting.shift()(r.value);
  }
});

// One RESP2 reply starting at `at`, or null when incomplete. Bulk strings stay Buffers.
function parse(b, at) {
  const eol = b.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(b[at]);
  const line = b.toString('latin1', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+': return { value: line, end: next };
    case '-': return { value: new Error(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (b.length < next + n + 2) return null;
      return { value: Buffer.from(b.subarray(next, next + n)), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const r = parse(b, pos);
        if (!r) return null;
        items.push(r.value);
        pos = r.end;
      }
      return { value: items, end: pos };
    }
    default: throw new Error(`unexpected RESP type byte ${b[at]}`);
  }
}

function cmd(...args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const ab = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(`$${ab.length}\r\n`, ab, '\r\n');
  }
  sock.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
  return new Promise((resolve) => waiting.push(resolve)).then((v) => {
    if (v instanceof Error) throw new Error(`${args[0]}: ${v.message}`);
    return v;
  });
}

try {
  mkdirSync(outdir, { recursive: true });
  const keys = await cmd('KEYS', '*');
  const tsv = [];
  for (const [i, key] of keys.entries()) {
    const type = await cmd('TYPE', key);
    const pttl = await cmd('PTTL', key);
    if (type === 'string') {
      const v = await cmd('GET', key);
      if (v !== null) writeFileSync(join(outdir, `${i}.get`), v);
    }
    const d = await cmd('DUMP', key);
    if (d !== null) writeFileSync(join(outdir, `${i}.dump`), d);
    tsv.push(`${i}\t${key.toString('latin1')}\t${type}\t${pttl}\n`);
  }
  writeFileSync(join(outdir, 'keys.tsv'), tsv.join(''));
  sock.end();
} catch (e) {
  console.error(`redis-raw: ${e.message}`);
  process.exit(1);
}
