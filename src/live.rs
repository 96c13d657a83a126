//! What a SIGHUP reload replaces while connections stay up: the sealer
//! (rules and keyring), the proxy's users and the client-side TLS
//! certificates. (The backend's certificates live in the backend's
//! [`crate::tls::BackendTls`], which the reload updates in place.)
//!
//! One [`Live`] is shared by every worker. A reload builds a complete new
//! [`Reloadable`] from the configuration file (validated as at start; an
//! invalid file changes nothing) and swaps it in with a new generation
//! number. A session keeps its own `Arc` of the current set and checks the
//! generation (one relaxed atomic load) before each batch of requests, so
//! existing connections seal under a newly promoted key from their next
//! request on; the listener takes the current TLS acceptor for each new
//! connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::Users;
use crate::sealing::Sealer;

/// The reloadable part of the configuration.
pub struct Reloadable {
    /// Rules and keys; `None` when nothing is sealed.
    pub sealer: Option<Arc<Sealer>>,
    /// The proxy's own users (AUTH, HELLO … AUTH).
    pub users: Arc<Users>,
    /// Client-side TLS; `None` when clients connect in plaintext.
    pub tls: Option<crate::tls::Acceptor>,
}

/// The current [`Reloadable`] and its generation.
pub struct Live {
    generation: AtomicU64,
    current: RwLock<Arc<Reloadable>>,
}

impl Live {
    /// Generation 1: the configuration loaded at start.
    pub fn new(first: Reloadable) -> Self {
        metrics::gauge!("respseal_config_generation").set(1.0);
        Live { generation: AtomicU64::new(1), current: RwLock::new(Arc::new(first)) }
    }

    /// The generation of the current set (cheap: compare before [`Live::load`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set and its generation.
    pub fn load(&self) -> (u64, Arc<Reloadable>) {
        let guard = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), Arc::clone(&guard))
    }

    /// Swap in a new set; returns its generation.
    pub fn store(&self, next: Reloadable) -> u64 {
        let mut guard = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(next);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("respseal_config_generation").set(generation as f64);
        generation
    }
}
