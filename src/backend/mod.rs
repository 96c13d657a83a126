//! Everything on the Redis side of the proxy.
//!
//! * [`url`]: the backend URL (`redis://[user:pass@]host:port[/db]`).
//! * [`conn`]: opening one backend connection and its handshake (AUTH,
//!   HELLO 3, SELECT) — used by both kinds of link.
//! * [`shared`]: a shared link, one connection multiplexed among sessions,
//!   with coalesced writes, in-order reply routing and reconnect with backoff.
//! * [`dedicated`]: a dedicated link, a session's own connection: queued
//!   writes, framed reads.
//! * [`topology`]: the master behind Redis Sentinel, asked of the
//!   sentinels with fred, and the epoch that ends at a failover.
//! * [`cluster`]: the slot map of a Redis Cluster, kept by fred.
//! * [`route`]: a session's link into a Redis Cluster (routing by slot,
//!   split commands, SCAN across masters, redirects).
//! * [`pool`]: the groups of shared links by (database, protocol), and the
//!   factory for dedicated links.

pub mod cluster;
pub mod conn;
pub mod dedicated;
pub mod pool;
pub mod route;
pub mod shared;
pub mod stream;
pub mod topology;
pub mod url;

pub use conn::{BackendError, Dedicated};
pub use dedicated::DedicatedLink;
pub use pool::{Backend, Shared};
pub use shared::{Held, LinkEvent, ReplyTx, SharedLink, SharedRequest};
pub use url::BackendUrl;
