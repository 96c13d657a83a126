//! Pseudonyms for key names (docs/design.md §3): the part of a key name
//! after a rule's literal prefix, stored in Redis as
//! `base64url(AES-SIV(name key, [label, namespace, prefix, part], rest))`.
//!
//! AES-SIV (RFC 5297, `AEAD_AES_SIV_CMAC_256`: two AES-128 keys from the
//! 32 bytes of a key file) is deterministic — the same name always gives
//! the same pseudonym, so lookups by name work — and authenticated: a
//! pseudonym made without the key, or moved under another prefix or
//! namespace, does not decode. It leaks only equality and length, which
//! is what a lookup by name needs. The label keeps these pseudonyms apart
//! from anything else the key could ever be used for; `part` keeps a hash
//! tag's pseudonym apart from a whole name's.

use aes_siv::KeyInit;
use aes_siv::siv::Aes128Siv;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::KeyMaterial;

/// Bound into every pseudonym.
const LABEL: &[u8] = b"respseal name v1";

/// Which part of a name a pseudonym stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything after the prefix.
    Rest,
    /// A `{hash tag}` inside it (kept in braces, so names Redis Cluster
    /// co-locates stay co-located).
    Tag,
}

impl Part {
    fn byte(self) -> &'static [u8] {
        match self {
            Part::Rest => b"r",
            Part::Tag => b"t",
        }
    }
}

/// The name key: never logged, zeroized on drop.
pub struct NameKey {
    id: u32,
    material: KeyMaterial,
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameKey({:08x}, [REDACTED])", self.id)
    }
}

impl NameKey {
    /// A name key with its id (the id of its key file).
    pub fn new(id: u32, material: KeyMaterial) -> Self {
        NameKey { id, material }
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn siv(&self) -> Aes128Siv {
        Aes128Siv::new(self.material.bytes().into())
    }

    /// A value that tells two name keys apart without showing either (a
    /// pseudonym of nothing under a label of its own): for a reload to
    /// notice that the name key changed.
    pub fn fingerprint(&self) -> Vec<u8> {
        self.siv().encrypt([b"respseal name key fingerprint".as_slice()], b"").unwrap_or_default()
    }

    /// The pseudonym of `plain` (appended to `out`): base64url, no padding.
    pub fn pseudonym_into(&self, namespace: &[u8], prefix: &[u8], part: Part, plain: &[u8], out: &mut Vec<u8>) {
        let headers: [&[u8]; 4] = [LABEL, namespace, prefix, part.byte()];
        // Only fails past 126 headers.
        let sealed = self.siv().encrypt(headers, plain).unwrap_or_default();
        let at = out.len();
        out.resize(at + base64::encoded_len(sealed.len(), false).unwrap_or(0), 0);
        let n = URL_SAFE_NO_PAD.encode_slice(&sealed, &mut out[at..]).unwrap_or(0);
        out.truncate(at + n);
    }

    /// What `pseudonym` stands for, if it was made by this key for this
    /// namespace, prefix and part.
    pub fn reveal(&self, namespace: &[u8], prefix: &[u8], part: Part, pseudonym: &[u8]) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(pseudonym).ok()?;
        let headers: [&[u8]; 4] = [LABEL, namespace, prefix, part.byte()];
        self.siv().decrypt(headers, &sealed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    /// RFC 5297 appendix A.1 (deterministic AES-SIV): the cipher under the
    /// names, with the key halves in the order the RFC gives them.
    #[test]
    fn aes_siv_known_answer_rfc5297_a1() {
        let key = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let plain = hex("112233445566778899aabbccddee");
        let mut siv = Aes128Siv::new(key.as_slice().try_into().expect("32 bytes"));
        let out = siv.encrypt([ad.as_slice()], &plain).expect("encrypts");
        assert_eq!(out, hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"));
    }

    fn key(byte: u8) -> NameKey {
        NameKey::new(1, KeyMaterial::from_bytes([byte; 32]))
    }

    fn pseudonym(k: &NameKey, ns: &[u8], prefix: &[u8], part: Part, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        k.pseudonym_into(ns, prefix, part, plain, &mut out);
        out
    }

    /// The construction itself (label, header order, encoding), against an
    /// independent implementation: Python's `cryptography` (OpenSSL) gives
    /// `urlsafe_b64encode(AESSIV(b"\x07" * 32).encrypt(b"abc", [b"respseal
    /// name v1", b"respseal", b"sess:", b"r"]))` = this. A change here makes
    /// every stored name unreachable.
    #[test]
    fn the_construction_is_stable() {
        let p = pseudonym(&key(7), b"respseal", b"sess:", Part::Rest, b"abc");
        assert_eq!(String::from_utf8(p).expect("ascii"), "FcfppVBQgqctzsHd5LG_9k0pDw");
    }

    #[test]
    fn deterministic_reversible_and_bound_to_its_context() {
        let k = key(1);
        let p = pseudonym(&k, b"ns", b"sess:", Part::Rest, b"id-123");
        assert_eq!(p, pseudonym(&k, b"ns", b"sess:", Part::Rest, b"id-123"));
        assert!(p.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_')));
        assert_eq!(k.reveal(b"ns", b"sess:", Part::Rest, &p).as_deref(), Some(&b"id-123"[..]));
        assert_ne!(p, pseudonym(&k, b"ns", b"sess:", Part::Rest, b"id-124"));
        // Another namespace, prefix, part or key: no decode.
        assert_eq!(k.reveal(b"other", b"sess:", Part::Rest, &p), None);
        assert_eq!(k.reveal(b"ns", b"sess", Part::Rest, &p), None);
        assert_eq!(k.reveal(b"ns", b"sess:", Part::Tag, &p), None);
        assert_eq!(key(2).reveal(b"ns", b"sess:", Part::Rest, &p), None);
        // The empty rest has a pseudonym too.
        let e = pseudonym(&k, b"ns", b"sess:", Part::Rest, b"");
        assert_eq!(k.reveal(b"ns", b"sess:", Part::Rest, &e).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn tampered_or_forged_pseudonyms_do_not_decode() {
        let k = key(3);
        let p = pseudonym(&k, b"ns", b"sess:", Part::Rest, b"session-id");
        for i in 0..p.len() {
            let mut t = p.clone();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(k.reveal(b"ns", b"sess:", Part::Rest, &t), None, "byte {i}");
        }
        for forged in [&b""[..], b"session-id", b"AAAAAAAAAAAAAAAAAAAAAA", b"not base64!", &p[..p.len() - 1]] {
            assert_eq!(k.reveal(b"ns", b"sess:", Part::Rest, forged), None);
        }
    }

    #[test]
    fn debug_shows_no_material() {
        let k = NameKey::new(0xabcdef01, KeyMaterial::from_bytes([0x5a; 32]));
        let shown = format!("{k:?}");
        assert!(shown.contains("abcdef01") && !shown.contains("5a5a") && !shown.contains("90"), "{shown}");
    }
}
