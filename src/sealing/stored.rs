//! Values as Redis stores them, one at a time, for the work respseal does
//! on them itself: moves (open under one name, seal under another, keeping
//! the value's age and re-sealed flag), `respseal rewrap` (re-seal under the
//! primary key) and `respseal check`'s sample. The bindings are built here,
//! as on the request path.

use bytes::{Bytes, BytesMut};

use super::Sealer;
use crate::crypto::{self, Binding, OpenError, RewrapError, SealError};
use crate::error::{CryptoError, Error};

/// A sealed value's `issued_at` and re-sealed flag, which a move keeps.
pub type Origin = (u64, bool);

impl Sealer {
    /// The binding of `key`'s string value, or of its hash `field`.
    fn binding<'a>(&'a self, key: &'a [u8], field: Option<&'a [u8]>) -> Binding<'a> {
        match field {
            Some(f) => Binding::hash_field(&self.namespace, key, f),
            None => Binding::string(&self.namespace, key),
        }
    }

    /// Legacy plaintext stored under string `key`, sealed and marked
    /// re-sealed from legacy plaintext.
    ///
    /// # Errors
    /// When there is no primary key.
    pub fn seal_legacy(&self, key: &[u8], plain: &[u8], now: u64) -> Result<Vec<u8>, SealError> {
        crypto::seal_resealed(&self.keyring, &self.binding(key, None), plain, now)
    }

    /// The value stored under string `key`, re-sealed under the primary key
    /// (its age and re-sealed flag kept).
    ///
    /// # Errors
    /// When it does not open, or there is no primary key.
    pub fn rewrap(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, RewrapError> {
        crypto::rewrap(&self.keyring, &self.binding(key, None), sealed)
    }

    /// Whether the value stored under string `key` opens with the keyring
    /// and its rule's max age; the plaintext is wiped.
    ///
    /// # Errors
    /// Why it does not open.
    pub fn check_opens(&self, key: &[u8], sealed: &[u8], now: u64) -> Result<(), OpenError> {
        let fresh = self.rules.find(key).and_then(|r| self.rules.get(r).freshness());
        let mut plain = crypto::open(&self.keyring, &self.binding(key, None), sealed, now, fresh)?;
        zeroize::Zeroize::zeroize(&mut plain);
        Ok(())
    }

    /// Open the value of the source of a move, stored under `key` (its
    /// hash `field`, if any): the plaintext and the value's origin. A value
    /// that does not open is counted and logged as an open failure here, and
    /// the move is refused with the reason: nothing of it is written
    /// anywhere, whatever the rule's `on_failure` says about replies.
    pub(super) fn open_stored(
        &self,
        key: &[u8],
        field: Option<&[u8]>,
        sealed: &[u8],
        now: u64,
    ) -> Result<(Vec<u8>, Origin), &'static str> {
        let report = |e: OpenError, key_id| Error::Crypto(CryptoError::Open { reason: e.reason(), key_id }).report();
        let info = crypto::inspect(sealed).map_err(|e| {
            report(e, None);
            "the source's value is not sealed"
        })?;
        let fresh = self.rules.find(key).and_then(|r| self.rules.get(r).freshness());
        let plain = crypto::open(&self.keyring, &self.binding(key, field), sealed, now, fresh).map_err(|e| {
            report(e, Some(info.key_id));
            "the source's value does not open"
        })?;
        Ok((plain, (info.issued_at, info.resealed)))
    }

    /// Seal `plain` under `key` (its hash `field`, if any) for a move,
    /// keeping the origin it had under its old name.
    pub(super) fn seal_stored(
        &self,
        key: &[u8],
        field: Option<&[u8]>,
        plain: &[u8],
        (issued_at, resealed): Origin,
    ) -> Result<Bytes, SealError> {
        let mut out = BytesMut::new();
        crypto::seal_flagged(&self.keyring, &self.binding(key, field), plain, issued_at, resealed, &mut out)?;
        Ok(out.freeze())
    }
}
