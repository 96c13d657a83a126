//! respseal: a Redis-protocol proxy that seals the values of sensitive keys
//! before they reach Redis and opens them on the way back.
//!
//! Applications point their unchanged Redis client at respseal; everything
//! that is not sealed passes through unchanged, and a client cannot tell the
//! proxy from Redis. The design of record is docs/design.md.
//!
//! # Layout
//!
//! * [`app`]: what the `respseal` command does — serve (with reload and
//!   the topology followers) and the operator subcommands.
//! * [`config`]: `config.toml` + `RESPSEAL_*` environment + flags, validated
//!   all at once before anything starts.
//! * [`settings`]: every one-value setting declared once — name, flag,
//!   environment variable, default, meaning.
//! * [`server`]: the listener and the worker threads (one single-threaded
//!   runtime per thread, each with its own shared links; a client stays on
//!   one worker) — accept, `max_clients`, graceful shutdown.
//! * [`idle`]: what a worker does before it waits for I/O (yield the CPU,
//!   unless CPU-bound neighbours make that costly).
//! * [`session`]: one task per client — read requests, route them, match
//!   replies to reply plans, write replies back. Owns pinning. A module of
//!   one concept per file: connection state and loop, input, the
//!   socket-free reply queue, local commands, the shared-link batch, the
//!   transaction state; runs over any `AsyncRead + AsyncWrite` (its
//!   in-process tests use duplex streams).
//! * [`plan`]: reply plans, the FIFO entries that say what to do with each
//!   reply.
//! * [`commands`]: the command table (data) and request classification —
//!   the only place command names are matched. The code reads the table
//!   for keys, values, reply shapes, link safety and cluster placement. Its
//!   `data` column closes the sealing boundary: a sealed name passes only
//!   through a row that says how it is treated; unknown commands are
//!   checked on every argument.
//! * [`protocol`]: RESP framing only — request parsing, reply boundaries
//!   (a resumable scanner with no depth limit and no recursion), one view
//!   of whole reply frames that every reader uses, encoding of the proxy's
//!   own frames. No I/O.
//! * [`error`]: errors by source (client, policy, backend, crypto) and the
//!   one rescue point that decides reply text, log line, metric and whether
//!   the connection closes; every error frame is built there.
//! * [`limits`]: per-client output limits (Redis's classes) and the
//!   proxy-wide budget for buffered client input.
//! * [`backend`]: the Redis side — connection handshake, shared multiplexed
//!   links, dedicated links (their I/O), the group pool, connections lent
//!   for code, cluster routing and the topology followers. The session asks
//!   [`backend::Backend`] to share, pin or lend, whatever the backend is.
//!   Both kinds of link read replies through `protocol::framed`.
//! * [`rules`]: which keys are sealed (glob patterns, per-rule policies).
//! * [`sealing`]: sealing in the request/reply path, one concept per file —
//!   the fail-closed boundary check, request rewriting, reply opening,
//!   pub/sub, declared scripts, and the moves respseal carries out itself
//!   (RENAME/RENAMENX/COPY of sealed names), stored values for the operator
//!   commands. The only place that builds bindings and calls `crypto`'s
//!   seal, open and rewrap.
//! * [`clock`]: the time every seal and open is stamped with.
//! * [`secrets`]: respseal's own credentials stay its own (`CONFIG GET`
//!   masking; the ACL subcommands that would show them are refused).
//! * [`auth`]: the proxy's own users (client AUTH), never forwarded.
//! * [`crypto`]: XAES-256-GCM, the sealed-value envelope and the keyring.
//!   Knows nothing about Redis or sessions.
//! * [`inspect`]: `respseal inspect`, envelope metadata of stored values
//!   (never plaintext); lists or drops values re-sealed from legacy plaintext.
//! * [`rewrap`]: `respseal rewrap` (online re-encryption under the primary
//!   key, compare-and-set, resumable) and `respseal check`'s sample.
//! * [`outbuf`]: output queue turning many frames into few syscalls.
//! * [`stats`]: hot-path counters, per thread, summed at scrape time.
//! * [`admin`]: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod error;
pub mod idle;
pub mod inspect;
pub mod limits;
pub mod live;
pub mod outbuf;
pub mod plan;
pub mod protocol;
pub mod rewrap;
pub mod rules;
pub mod sealing;
pub mod secrets;
pub mod server;
pub mod session;
pub mod settings;
pub mod stats;
pub mod tls;
