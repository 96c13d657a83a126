//! Cryptographic core of respseal: sealing (encrypting and authenticating)
//! the values of sensitive Redis keys, and the keys used to do it.
//!
//! - [`xaes`]: the XAES-256-GCM AEAD (c2sp.org/XAES-256-GCM), built on the
//!   RustCrypto `aes` and `aes-gcm` crates.
//! - [`envelope`]: the sealed-value wire format, its binding to namespace,
//!   Redis key and hash field, and `seal`/`open`/`inspect`.
//! - [`keyring`]: keys and their states (primary, decrypt-only, disabled,
//!   destroyed), key files and environment-variable material.
//!
//! What it is not: this module does no I/O with Redis or clients, knows no
//! RESP, keeps no clock (callers pass `now` in unix seconds) and exports no
//! metrics itself; errors carry stable `reason()` labels for the caller's
//! metrics. Nothing here logs, and no error or `Debug` output contains key
//! material or values.

pub mod envelope;
pub mod keyring;
pub mod names;
pub mod xaes;

pub use envelope::{
    Binding, EnvelopeInfo, Freshness, OVERHEAD, OpenError, RewrapError, SealError, ValueKind, inspect, is_sealed, open,
    open_into, rewrap, seal, seal_flagged, seal_into, seal_resealed,
};
pub use keyring::{
    Key, KeyMaterial, KeyOrigin, KeySource, KeySourceError, KeySpec, KeyState, Keyring, KeyringError,
    generate_key_file, load_key_file, material_from_env,
};
pub use xaes::{Xaes256Gcm, XaesError};
