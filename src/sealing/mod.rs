//! Sealing in the request/reply path: which arguments of a request are
//! sealed before it reaches Redis, and how a reply is opened before it
//! reaches the client (docs/design.md §3–§4).
//!
//! [`Sealer::inspect`] looks at one request with the command table and the
//! rules and says: leave it alone (no sealed key involved — the common,
//! allocation-free case), refuse it (value-inspecting commands and commands
//! the proxy cannot seal on a sealed key, unknown commands with an argument
//! matching a rule: fail closed), or forward it rewritten with sealed values
//! and an [`OpenPlan`] for its reply.
//!
//! Opening never falls back to plaintext: a value that does not open becomes
//! a null (or an error, per rule), is counted in
//! `respseal_open_failures_total{reason}` and logged with key id and reason
//! only — never the key name or the value.
//!
//! One concept per file:
//! * [`boundary`]: [`Sealer::inspect`], the fail-closed check of one request.
//! * [`request`]: sealing a request's values on their way to Redis.
//! * [`open`]: opening a reply's values on their way to the client.
//! * [`pubsub`]: opening deliveries on sealed channels.
//! * [`scripts`]: declared scripts.
//! * [`moves`]: RENAME/RENAMENX/COPY of sealed names, carried out by respseal.
//! * [`names`]: pseudonymised key names, both ways.
//!
//! This folder is the only caller of [`crate::crypto`]'s seal and open on the
//! request path; every binding (namespace, name, field, channel) is built here.

pub mod boundary;
pub mod moves;
pub mod names;
pub mod open;
pub mod pubsub;
pub mod request;
pub mod scripts;
pub mod stored;

use bytes::Bytes;

pub use boundary::Inspect;
pub use open::{HashReply, OpenPlan, Reseal};
pub use scripts::{ScriptProfile, ScriptValue};

use crate::commands::Args;
use crate::crypto::Keyring;
use crate::rules::Rules;

/// A sealed key a reply value belongs to.
#[derive(Debug, Clone)]
pub struct SealedKey {
    /// Index of the rule that matched.
    pub rule: usize,
    /// The key name (bound into the envelope's AAD).
    pub key: Bytes,
}

/// Rules + keyring + namespace (+ declared scripts).
pub struct Sealer {
    rules: Rules,
    keyring: Keyring,
    namespace: Vec<u8>,
    scripts: Vec<ScriptProfile>,
    /// The name key, for rules that pseudonymise names.
    names: Option<crate::crypto::names::NameKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("rules", &self.rules).field("keyring", &self.keyring).finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for these rules, keys and namespace.
    pub fn new(rules: Rules, keyring: Keyring, namespace: Vec<u8>) -> Self {
        Sealer { rules, keyring, namespace, scripts: Vec::new(), names: None }
    }

    /// With declared scripts.
    pub fn with_scripts(mut self, scripts: Vec<ScriptProfile>) -> Self {
        self.scripts = scripts;
        self
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The namespace bound into every sealed value.
    pub fn namespace(&self) -> &[u8] {
        &self.namespace
    }

    fn pattern(&self, rule: usize) -> String {
        self.rules.get(rule).source.clone()
    }

    fn sealed_key(&self, args: &Args<'_>, i: usize) -> Option<SealedKey> {
        let key = args.get(i)?;
        self.rules.find(key).map(|rule| SealedKey { rule, key: Bytes::copy_from_slice(key) })
    }
}
