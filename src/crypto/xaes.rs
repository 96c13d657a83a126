//! XAES-256-GCM, the extended-nonce AEAD specified at <https://c2sp.org/XAES-256-GCM>.
//!
//! What it is: a thin layer over the RustCrypto `aes` and `aes-gcm` crates. For
//! every message a fresh AES-256-GCM subkey is derived from the 256-bit input key
//! and the first 96 bits of the 192-bit nonce with the NIST SP 800-108r1
//! counter-mode KDF instantiated with single-block CMAC-AES-256; the message is
//! then sealed with plain AES-256-GCM under that subkey and the last 96 bits of
//! the nonce. The input key's AES-256 key schedule and the CMAC subkey `K1` are
//! computed once, in [`Xaes256Gcm::new`].
//!
//! What it is not: it is not nonce-misuse resistant and not key-committing
//! (exactly like AES-256-GCM), it does not generate nonces (callers must draw
//! them from the OS RNG; 192 random bits make collisions negligible), and it
//! knows nothing about the sealed-value format of respseal (see
//! [`super::envelope`]).
//!
//! Derived keys are cached. Deriving `Kx` and setting up AES-GCM under it
//! costs more than sealing a 1 KiB value (two single-block AES calls, an
//! AES-256 key expansion and the GHASH key setup), so each thread keeps the
//! last few derived keys, looked up by (instance, `N[:12]`). The result is
//! bit-for-bit the same as deriving afresh; the cache only pays off when
//! callers reuse nonce prefixes (see [`super::envelope`]'s nonces).
//!
//! Key material hygiene: the CMAC subkey and every derived subkey are wiped
//! when dropped; dropping any instance empties every thread's cache the next
//! time that thread uses XAES. The AES key schedules held inside the `aes`
//! crate's types are only wiped if that crate's `zeroize` feature is enabled
//! (it is, in this crate's manifest).

use core::cell::RefCell;
use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aes::Aes256Enc;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U12;
use aes_gcm::{AesGcm, Tag};
use zeroize::{Zeroize, Zeroizing};

/// AES-256-GCM over the encrypt-only AES-256 key schedule, which is all GCM
/// needs and is cheaper to expand than the full encrypt+decrypt schedule.
type Aes256GcmEnc = AesGcm<Aes256Enc, U12>;

/// Length of an XAES-256-GCM key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an XAES-256-GCM nonce in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the authentication tag appended to every ciphertext, in bytes.
pub const TAG_LEN: usize = 16;

/// Largest plaintext AES-GCM accepts, in bytes (2^36 - 32, NIST SP 800-38D).
const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;

/// Why an XAES-256-GCM operation failed.
///
/// Deliberately coarse: it never says anything about the key, the plaintext or
/// how far verification got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XaesError {
    /// The plaintext or ciphertext exceeds AES-GCM's length limit (about 64 GiB).
    #[error("message too long for AES-GCM")]
    TooLong,
    /// The ciphertext is shorter than an authentication tag.
    #[error("ciphertext shorter than the authentication tag")]
    TooShort,
    /// Authentication failed: wrong key, nonce or additional data, or the
    /// ciphertext or tag was modified. No plaintext is released.
    #[error("authentication failed")]
    Authentication,
}

/// An XAES-256-GCM instance bound to one 256-bit key.
///
/// Holds the precomputed AES-256 key schedule of the input key and the CMAC
/// subkey `K1`; the raw key itself is not retained. `Debug` never prints key
/// material. Not `Clone`, to avoid scattering copies of the key schedule.
pub struct Xaes256Gcm {
    /// AES-256 keyed with the input key `K` (encrypt direction only).
    cipher: Aes256Enc,
    /// CMAC subkey `K1` derived from `L = AES-256_K(0^128)`. Wiped on drop.
    k1: [u8; 16],
    /// Process-unique id naming this instance in the derived-key cache.
    id: u64,
}

impl Drop for Xaes256Gcm {
    fn drop(&mut self) {
        self.k1.zeroize();
        // Derived keys of this instance must not outlive it.
        CACHE_EPOCH.fetch_add(1, Ordering::Relaxed);
    }
}

/// Source of [`Xaes256Gcm::id`]s.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Bumped whenever an instance is dropped; a thread whose cache was filled in
/// an older epoch empties it before use.
static CACHE_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Derived keys each thread keeps.
const CACHE_ENTRIES: usize = 8;

struct Derived {
    owner: u64,
    prefix: [u8; 12],
    gcm: Aes256GcmEnc,
}

struct DerivedCache {
    epoch: u64,
    /// Allocated at its full size once: a reallocation would move key
    /// schedules and leave copies of them in freed memory, unwiped.
    entries: Vec<Derived>,
    /// Next slot to replace once full (round robin).
    next: usize,
}

impl Default for DerivedCache {
    fn default() -> Self {
        DerivedCache { epoch: 0, entries: Vec::with_capacity(CACHE_ENTRIES), next: 0 }
    }
}

thread_local! {
    static DERIVED: RefCell<DerivedCache> = RefCell::default();
}

impl fmt::Debug for Xaes256Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Xaes256Gcm([REDACTED])")
    }
}

impl Xaes256Gcm {
    /// Creates an instance for `key`, precomputing the AES-256 key schedule and
    /// the CMAC subkey `K1` (steps 1 and 2 of the spec's key derivation).
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let cipher = Aes256Enc::new(key.into());
        // Step 1: L = AES-256_K(0^128).
        let mut l = Zeroizing::new([0u8; 16]);
        cipher.encrypt_block((&mut *l).into());
        // Step 2: K1 = L << 1, xor 0x87 into the last byte if MSB(L) was set.
        let l_int = Zeroizing::new(u128::from_be_bytes(*l));
        let mut k1_int = Zeroizing::new(*l_int << 1);
        if *l_int >> 127 == 1 {
            *k1_int ^= 0x87;
        }
        let k1 = k1_int.to_be_bytes();
        Self { cipher, k1, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }

    /// Runs `f` with AES-GCM under the key derived for `nonce` and the 96-bit
    /// GCM nonce `Nx`, from this thread's cache when it holds the key.
    fn with_derived<T>(&self, nonce: &[u8; NONCE_LEN], f: impl FnOnce(&Aes256GcmEnc, &Array<u8, U12>) -> T) -> T {
        let mut prefix = [0u8; 12];
        prefix.copy_from_slice(&nonce[..12]);
        let mut nx = Array::from([0u8; 12]);
        nx.copy_from_slice(&nonce[12..]);
        DERIVED.with_borrow_mut(|cache| {
            let epoch = CACHE_EPOCH.load(Ordering::Relaxed);
            if cache.epoch != epoch {
                cache.entries.clear();
                cache.next = 0;
                cache.epoch = epoch;
            }
            if let Some(hit) = cache.entries.iter().find(|d| d.owner == self.id && d.prefix == prefix) {
                return f(&hit.gcm, &nx);
            }
            let fresh = Derived { owner: self.id, prefix, gcm: self.derive(nonce) };
            let slot = if cache.entries.len() < CACHE_ENTRIES {
                cache.entries.push(fresh);
                cache.entries.len() - 1
            } else {
                let slot = cache.next;
                cache.entries[slot] = fresh;
                cache.next = (slot + 1) % CACHE_ENTRIES;
                slot
            };
            f(&cache.entries[slot].gcm, &nx)
        })
    }

    /// Derives the per-message AES-256-GCM key `Kx` (steps 3 to 5 of the spec)
    /// from the first 96 bits of `nonce`, ready to use with `Nx = N[12:]`.
    fn derive(&self, nonce: &[u8; NONCE_LEN]) -> Aes256GcmEnc {
        let mut kx = Zeroizing::new([0u8; 32]);
        for (counter, half) in [1u8, 2u8].into_iter().zip(kx.chunks_exact_mut(16)) {
            // M_i = 0x00 || i || 'X' || 0x00 || N[:12], then M_i xor K1.
            let mut block = Zeroizing::new([0u8; 16]);
            block[1] = counter;
            block[2] = 0x58;
            block[4..].copy_from_slice(&nonce[..12]);
            for (b, k) in block.iter_mut().zip(self.k1.iter()) {
                *b ^= k;
            }
            self.cipher.encrypt_block((&mut *block).into());
            half.copy_from_slice(&block[..]);
        }
        Aes256GcmEnc::new((&*kx).into())
    }

    /// Encrypts `buffer` in place and returns the 16-byte authentication tag.
    ///
    /// # Errors
    /// [`XaesError::TooLong`] if `buffer` exceeds AES-GCM's plaintext limit.
    pub fn encrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        buffer: &mut [u8],
        aad: &[u8],
    ) -> Result<[u8; TAG_LEN], XaesError> {
        if buffer.len() as u64 > MAX_PLAINTEXT_LEN {
            return Err(XaesError::TooLong);
        }
        let tag = self.with_derived(nonce, |gcm, nx| gcm.encrypt_inout_detached(nx, aad, buffer.into()));
        Ok(tag.map_err(|_| XaesError::TooLong)?.0)
    }

    /// Verifies `tag` over `buffer` and `aad`, and only if it matches decrypts
    /// `buffer` in place. On failure `buffer` still holds the ciphertext.
    ///
    /// # Errors
    /// [`XaesError::Authentication`] if verification fails,
    /// [`XaesError::TooLong`] if `buffer` exceeds AES-GCM's length limit.
    pub fn decrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        buffer: &mut [u8],
        aad: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), XaesError> {
        if buffer.len() as u64 > MAX_PLAINTEXT_LEN {
            return Err(XaesError::TooLong);
        }
        let tag: &Tag = tag.into();
        self.with_derived(nonce, |gcm, nx| gcm.decrypt_inout_detached(nx, aad, buffer.into(), tag))
            .map_err(|_| XaesError::Authentication)
    }

    /// Encrypts `plaintext` with additional data `aad` and returns
    /// `ciphertext || tag` (plaintext length + 16 bytes).
    ///
    /// # Errors
    /// [`XaesError::TooLong`] if `plaintext` exceeds AES-GCM's limit (about 64 GiB).
    pub fn encrypt(&self, nonce: &[u8; NONCE_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, XaesError> {
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
        out.extend_from_slice(plaintext);
        let tag = self.encrypt_in_place_detached(nonce, &mut out, aad)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Verifies and decrypts `ct_and_tag` (`ciphertext || tag`) with additional
    /// data `aad`. Plaintext is returned only if authentication succeeds.
    ///
    /// # Errors
    /// [`XaesError::TooShort`] if the input is shorter than a tag,
    /// [`XaesError::Authentication`] if verification fails.
    pub fn decrypt(&self, nonce: &[u8; NONCE_LEN], ct_and_tag: &[u8], aad: &[u8]) -> Result<Vec<u8>, XaesError> {
        let ct_len = ct_and_tag.len().checked_sub(TAG_LEN).ok_or(XaesError::TooShort)?;
        let (ct, tag) = ct_and_tag.split_at(ct_len);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| XaesError::TooShort)?;
        let mut out = ct.to_vec();
        self.decrypt_in_place_detached(nonce, &mut out, aad, tag)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const SPEC_NONCE: &[u8; 24] = b"ABCDEFGHIJKLMNOPQRSTUVWX";

    /// Spec vector 1 (MSB of L is 0), including the intermediate values.
    #[test]
    fn spec_vector_1() {
        let x = Xaes256Gcm::new(&[0x01; 32]);
        assert_eq!(hex(&x.k1), "e531954aca063d5b8d9c47a47d4cc6f0");
        let ct = x.encrypt(SPEC_NONCE, b"XAES-256-GCM", b"").unwrap();
        assert_eq!(hex(&ct), "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271");
        assert_eq!(x.decrypt(SPEC_NONCE, &ct, b"").unwrap(), b"XAES-256-GCM");
    }

    /// Spec vector 2 (MSB of L is 1, so the 0x87 reduction is exercised), with AAD.
    #[test]
    fn spec_vector_2() {
        let x = Xaes256Gcm::new(&[0x03; 32]);
        assert_eq!(hex(&x.k1), "23810ec50edb99f374409466ed1f4b7b");
        let aad = b"c2sp.org/XAES-256-GCM";
        let ct = x.encrypt(SPEC_NONCE, b"XAES-256-GCM", aad).unwrap();
        assert_eq!(hex(&ct), "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d");
        assert_eq!(x.decrypt(SPEC_NONCE, &ct, aad).unwrap(), b"XAES-256-GCM");
        assert_eq!(x.decrypt(SPEC_NONCE, &ct, b""), Err(XaesError::Authentication));
    }

    /// The spec's intermediate L and Kx values for both vectors.
    #[test]
    fn spec_intermediate_values() {
        for (key, l_hex, kx_hex) in [
            (
                [0x01; 32],
                "7298caa565031eadc6ce23d23ea66378",
                "c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b",
            ),
            (
                [0x03; 32],
                "91c08762876dccf9ba204a33768fa5fe",
                "e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8",
            ),
        ] {
            let x = Xaes256Gcm::new(&key);
            let mut l = Array::from([0u8; 16]);
            x.cipher.encrypt_block(&mut l);
            assert_eq!(hex(&l), l_hex);
            // Recompute Kx by hand and check that AES-256-GCM under it with
            // Nx = N[12:] gives the same ciphertext as the XAES path.
            let kx = derive_by_hand(&x, SPEC_NONCE);
            assert_eq!(hex(&kx), kx_hex);
            let gcm = Aes256GcmEnc::new((&kx).into());
            let nx: &Array<u8, U12> = SPEC_NONCE[12..].try_into().unwrap();
            let mut buf = *b"hello";
            let tag = gcm.encrypt_inout_detached(nx, b"aad", (&mut buf[..]).into()).unwrap();
            let mut expected = buf.to_vec();
            expected.extend_from_slice(&tag);
            assert_eq!(x.encrypt(SPEC_NONCE, b"hello", b"aad").unwrap(), expected);
        }
    }

    /// `Kx` for `nonce`, computed block by block from the spec's steps 3-5.
    fn derive_by_hand(x: &Xaes256Gcm, nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
        let mut kx = [0u8; 32];
        for (i, half) in kx.chunks_exact_mut(16).enumerate() {
            let mut m = [0u8; 16];
            m[1] = u8::try_from(i + 1).unwrap();
            m[2] = b'X';
            m[4..].copy_from_slice(&nonce[..12]);
            let mut block = Array::from(m);
            for (b, k) in block.iter_mut().zip(x.k1.iter()) {
                *b ^= k;
            }
            x.cipher.encrypt_block(&mut block);
            half.copy_from_slice(&block);
        }
        kx
    }

    /// Messages long enough for every bulk path of the AES backend this CPU
    /// selects (AES-NI: 8 blocks at a time, 256-bit VAES: 30, AVX-512: more)
    /// and of GHASH (4 blocks), with every kind of tail, agree both ways
    /// with an independent AES-256-GCM (ring's, BoringSSL's assembly) under
    /// the hand-derived `Kx`. The spec's vectors stop at 255 bytes, shorter
    /// than one 30-block batch.
    #[test]
    fn long_messages_match_an_independent_aes_gcm() {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let x = Xaes256Gcm::new(&[0x5a; 32]);
        let mut rng = keccak::Sponge::shake128();
        rng.absorb(b"respseal long messages");
        for len in [0, 1, 15, 16, 17, 127, 128, 129, 479, 480, 481, 959, 960, 1024, 1080, 1500, 4103, 16384, 65539] {
            for aad_len in [0, 13, 64, 200] {
                let mut nonce = [0u8; NONCE_LEN];
                rng.squeeze(&mut nonce);
                let mut plaintext = vec![0u8; len];
                rng.squeeze(&mut plaintext);
                let mut aad = vec![0u8; aad_len];
                rng.squeeze(&mut aad);
                let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derive_by_hand(&x, &nonce)).unwrap());
                let ring_nonce = || Nonce::try_assume_unique_for_key(&nonce[12..]).unwrap();
                let mut expected = plaintext.clone();
                ring_key.seal_in_place_append_tag(ring_nonce(), Aad::from(&aad), &mut expected).unwrap();
                let ours = x.encrypt(&nonce, &plaintext, &aad).unwrap();
                assert!(ours == expected, "sealing differs from ring at {len} bytes, aad {aad_len}");
                let mut theirs = ours.clone();
                let opened = ring_key.open_in_place(ring_nonce(), Aad::from(&aad), &mut theirs).unwrap();
                assert!(opened == plaintext, "ring does not open ours at {len} bytes");
                assert!(x.decrypt(&nonce, &expected, &aad).unwrap() == plaintext, "ours does not open ring's at {len}");
                if len > 0 {
                    let mut bad = expected.clone();
                    bad[len - 1] ^= 0x80;
                    assert_eq!(x.decrypt(&nonce, &bad, &aad), Err(XaesError::Authentication));
                }
            }
        }
    }

    #[test]
    fn rejects_tampering_and_short_input() {
        let x = Xaes256Gcm::new(&[7; 32]);
        let nonce = [9u8; 24];
        let ct = x.encrypt(&nonce, b"payload", b"ad").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert_eq!(x.decrypt(&nonce, &bad, b"ad"), Err(XaesError::Authentication));
        }
        for bit in [0usize, 8 * 12 - 1, 8 * 12, 8 * 24 - 1] {
            let mut bad_nonce = nonce;
            bad_nonce[bit / 8] ^= 1 << (bit % 8);
            assert!(x.decrypt(&bad_nonce, &ct, b"ad").is_err());
        }
        let other = Xaes256Gcm::new(&[8; 32]);
        assert!(other.decrypt(&nonce, &ct, b"ad").is_err());
        assert_eq!(x.decrypt(&nonce, &ct[..15], b"ad"), Err(XaesError::TooShort));
        // Empty plaintext round-trips to a bare tag.
        let empty = x.encrypt(&nonce, b"", b"").unwrap();
        assert_eq!(empty.len(), TAG_LEN);
        assert_eq!(x.decrypt(&nonce, &empty, b"").unwrap(), b"");
    }

    /// A derived key served from the cache gives exactly what a fresh
    /// derivation gives, and is never served to another instance or prefix.
    #[test]
    fn cached_derivation_matches_fresh_derivation() {
        let cached = Xaes256Gcm::new(&[0x11; 32]);
        let mut nonce = [5u8; 24];
        let first = cached.encrypt(&nonce, b"one", b"ad").unwrap();
        nonce[20] ^= 1; // same prefix: served from the cache
        let second = cached.encrypt(&nonce, b"two", b"ad").unwrap();
        let fresh = Xaes256Gcm::new(&[0x11; 32]); // new instance: derives afresh
        assert_eq!(fresh.encrypt(&nonce, b"two", b"ad").unwrap(), second);
        assert_eq!(fresh.decrypt(&[5u8; 24], &first, b"ad").unwrap(), b"one");
        let other_key = Xaes256Gcm::new(&[0x12; 32]);
        assert_eq!(other_key.decrypt(&nonce, &second, b"ad"), Err(XaesError::Authentication));
        // More prefixes than the cache holds, then back to the first.
        for p in 0..(CACHE_ENTRIES as u8 + 3) {
            let mut n = nonce;
            n[0] = p;
            let ct = cached.encrypt(&n, b"p", b"").unwrap();
            assert_eq!(fresh.decrypt(&n, &ct, b"").unwrap(), b"p");
        }
        assert_eq!(cached.decrypt(&nonce, &second, b"ad").unwrap(), b"two");
        drop(other_key); // empties the cache; results stay the same
        assert_eq!(cached.decrypt(&nonce, &second, b"ad").unwrap(), b"two");
    }

    #[test]
    fn debug_is_redacted() {
        let x = Xaes256Gcm::new(&[0x42; 32]);
        assert_eq!(format!("{x:?}"), "Xaes256Gcm([REDACTED])");
    }

    /// Minimal Keccak sponge used only by the accumulated test below.
    ///
    /// `sha3` 0.12 no longer ships SHAKE (it moved to the separate `shake`
    /// crate), so SHAKE-128 is built here on a textbook Keccak-f[1600]; the
    /// permutation is cross-checked against `sha3::Sha3_256`, and the SHAKE-128
    /// instantiation against the stream prefix quoted in the spec.
    mod keccak {
        const RC: [u64; 24] = [
            0x0000000000000001,
            0x0000000000008082,
            0x800000000000808a,
            0x8000000080008000,
            0x000000000000808b,
            0x0000000080000001,
            0x8000000080008081,
            0x8000000000008009,
            0x000000000000008a,
            0x0000000000000088,
            0x0000000080008009,
            0x000000008000000a,
            0x000000008000808b,
            0x800000000000008b,
            0x8000000000008089,
            0x8000000000008003,
            0x8000000000008002,
            0x8000000000000080,
            0x000000000000800a,
            0x800000008000000a,
            0x8000000080008081,
            0x8000000000008080,
            0x0000000080000001,
            0x8000000080008008,
        ];

        /// Rotation offsets r[x][y], FIPS 202 section 3.2.2 (indexed [x + 5y]).
        const ROT: [u32; 25] =
            [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];

        fn keccak_f(a: &mut [u64; 25]) {
            for rc in RC {
                // Theta.
                let mut c = [0u64; 5];
                for x in 0..5 {
                    c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
                }
                for x in 0..5 {
                    let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
                    for y in 0..5 {
                        a[x + 5 * y] ^= d;
                    }
                }
                // Rho and pi: B[y, 2x+3y] = rot(A[x, y], r[x, y]).
                let mut b = [0u64; 25];
                for x in 0..5 {
                    for y in 0..5 {
                        b[y + 5 * ((2 * x + 3 * y) % 5)] = a[x + 5 * y].rotate_left(ROT[x + 5 * y]);
                    }
                }
                // Chi.
                for x in 0..5 {
                    for y in 0..5 {
                        a[x + 5 * y] = b[x + 5 * y] ^ (!b[(x + 1) % 5 + 5 * y] & b[(x + 2) % 5 + 5 * y]);
                    }
                }
                // Iota.
                a[0] ^= rc;
            }
        }

        /// A Keccak sponge with byte-aligned rate and domain padding byte.
        pub struct Sponge {
            state: [u64; 25],
            rate: usize,
            pad: u8,
            pos: usize,
            squeezing: bool,
        }

        impl Sponge {
            fn new(rate: usize, pad: u8) -> Self {
                Self { state: [0; 25], rate, pad, pos: 0, squeezing: false }
            }

            /// SHAKE-128: rate 168 bytes, domain bits 1111.
            pub fn shake128() -> Self {
                Self::new(168, 0x1f)
            }

            /// SHA3-256: rate 136 bytes, domain bits 01 (fixed 32-byte output).
            pub fn sha3_256() -> Self {
                Self::new(136, 0x06)
            }

            fn xor_byte(&mut self, i: usize, v: u8) {
                self.state[i / 8] ^= u64::from(v) << (8 * (i % 8));
            }

            fn get_byte(&self, i: usize) -> u8 {
                self.state[i / 8].to_le_bytes()[i % 8]
            }

            pub fn absorb(&mut self, data: &[u8]) {
                assert!(!self.squeezing);
                for &byte in data {
                    self.xor_byte(self.pos, byte);
                    self.pos += 1;
                    if self.pos == self.rate {
                        keccak_f(&mut self.state);
                        self.pos = 0;
                    }
                }
            }

            pub fn squeeze(&mut self, out: &mut [u8]) {
                if !self.squeezing {
                    self.xor_byte(self.pos, self.pad);
                    self.xor_byte(self.rate - 1, 0x80);
                    keccak_f(&mut self.state);
                    self.pos = 0;
                    self.squeezing = true;
                }
                for o in out {
                    if self.pos == self.rate {
                        keccak_f(&mut self.state);
                        self.pos = 0;
                    }
                    *o = self.get_byte(self.pos);
                    self.pos += 1;
                }
            }
        }
    }

    /// Cross-checks the test-only Keccak permutation against the `sha3` crate
    /// (several input lengths around the rate boundary) and the SHAKE-128
    /// instantiation against the stream prefix printed in the spec.
    #[test]
    fn test_sponge_matches_sha3_crate_and_spec() {
        use sha3::Digest;
        for len in [0usize, 1, 135, 136, 137, 300, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut mine = keccak::Sponge::sha3_256();
            mine.absorb(&data);
            let mut out = [0u8; 32];
            mine.squeeze(&mut out);
            let theirs = sha3::Sha3_256::digest(&data);
            assert_eq!(out[..], theirs[..], "len {len}");
        }
        let mut rng = keccak::Sponge::shake128();
        let mut prefix = [0u8; 16];
        rng.squeeze(&mut prefix);
        assert_eq!(hex(&prefix), "7f9c2ba4e88f827d616045507605853e");
    }

    /// The spec's accumulated randomized test: 10,000 iterations reading
    /// `key[32] || nonce[24] || plaintext<0..255> || aad<0..255>` (RFC 8446
    /// notation: one length byte, then that many bytes) from a SHAKE-128 stream
    /// with empty input, hashing every ciphertext into a second SHAKE-128 and
    /// comparing its first 32 output bytes with the spec's value.
    #[test]
    fn spec_accumulated_10k() {
        let mut rng = keccak::Sponge::shake128();
        let mut acc = keccak::Sponge::shake128();
        for _ in 0..10_000 {
            let mut key = [0u8; 32];
            rng.squeeze(&mut key);
            let mut nonce = [0u8; 24];
            rng.squeeze(&mut nonce);
            let mut len = [0u8; 1];
            rng.squeeze(&mut len);
            let mut plaintext = vec![0u8; usize::from(len[0])];
            rng.squeeze(&mut plaintext);
            rng.squeeze(&mut len);
            let mut aad = vec![0u8; usize::from(len[0])];
            rng.squeeze(&mut aad);

            let x = Xaes256Gcm::new(&key);
            let ct = x.encrypt(&nonce, &plaintext, &aad).unwrap();
            acc.absorb(&ct);
            assert_eq!(x.decrypt(&nonce, &ct, &aad).unwrap(), plaintext);
        }
        let mut digest = [0u8; 32];
        acc.squeeze(&mut digest);
        assert_eq!(hex(&digest), "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939");
    }

    #[test]
    fn the_derived_key_cache_never_reallocates() {
        // On a thread of its own, so that the cache starts empty.
        std::thread::spawn(|| {
            let x = Xaes256Gcm::new(&[7; 32]);
            let mut first_ptr = None;
            for i in 0..(CACHE_ENTRIES as u8 * 3) {
                let mut nonce = [0u8; 24];
                nonce[0] = i;
                x.encrypt(&nonce, b"v", b"").expect("encrypt");
                DERIVED.with_borrow(|c| {
                    assert_eq!(c.entries.capacity(), CACHE_ENTRIES, "allocated at its full size");
                    let ptr = c.entries.as_ptr();
                    assert_eq!(*first_ptr.get_or_insert(ptr), ptr, "the cache moved");
                });
            }
        })
        .join()
        .expect("cache thread");
    }
}
