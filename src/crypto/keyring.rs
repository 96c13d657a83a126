//! The keyring: which sealing keys exist, what each may be used for, and where
//! their material comes from (key files or environment variables).
//!
//! What it is: a set of keys identified by non-zero `u32` ids, each in one of
//! four states ([`KeyState`]): `Primary` (seals new values and opens), at most
//! one per keyring; `DecryptOnly` (opens old values during rotation);
//! `Disabled` (known but refused, no material kept); `Destroyed` (tombstone
//! without material). For every usable key it keeps the precomputed
//! [`Xaes256Gcm`] instance, never the raw bytes. It also reads and writes the
//! small TOML key file format and builds a keyring from [`KeySpec`]s.
//!
//! What it is not: it does not encrypt or parse sealed values (see
//! [`super::envelope`]), does not watch files or reload itself, and does not
//! decide which keys are configured — that is the caller's configuration.
//!
//! Secrets hygiene: material lives in [`KeyMaterial`] (zeroized on drop, `Debug`
//! prints `[REDACTED]`); no `Debug` output or error message of this module ever
//! contains key material. Errors name the file or environment variable and the
//! problem, and may name key ids (which are not secret: they are stored in
//! clear in every sealed value).

use core::fmt;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::xaes::{KEY_LEN, Xaes256Gcm};

/// Length of a key id rendered as lowercase hex (a `u32` is 8 hex digits).
const KEY_ID_HEX_LEN: usize = 8;
/// Length of key material rendered as hex.
const MATERIAL_HEX_LEN: usize = 2 * KEY_LEN;

/// 32 bytes of secret key material.
///
/// Zeroized on drop; `Debug` prints `[REDACTED]`. It is deliberately not
/// `Clone`, `Display` or serializable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; KEY_LEN]);

impl KeyMaterial {
    /// Wraps raw key bytes. The caller should wipe its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Draws fresh material from the OS random number generator.
    ///
    /// # Errors
    /// [`KeySourceError::Rng`] if the OS RNG fails.
    pub fn generate() -> Result<Self, KeySourceError> {
        let mut material = Self([0u8; KEY_LEN]);
        getrandom::fill(&mut material.0).map_err(|_| KeySourceError::Rng)?;
        Ok(material)
    }

    /// Parses exactly 64 hex digits (either case). `origin` names where the
    /// text came from, for the error message.
    ///
    /// # Errors
    /// [`KeySourceError::InvalidMaterial`] with the reason; the text itself is
    /// never included.
    pub fn from_hex(text: &str, origin: &KeyOrigin) -> Result<Self, KeySourceError> {
        let invalid = |reason| KeySourceError::InvalidMaterial { origin: origin.clone(), reason };
        if text.len() != MATERIAL_HEX_LEN {
            return Err(invalid("must be exactly 64 hex digits (32 bytes)"));
        }
        let mut material = Self([0u8; KEY_LEN]);
        let (pairs, _) = text.as_bytes().as_chunks::<2>();
        for (byte, &[hi, lo]) in material.0.iter_mut().zip(pairs) {
            let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                return Err(invalid("contains a character that is not a hex digit"));
            };
            *byte = (hi << 4) | lo;
        }
        Ok(material)
    }

    /// The raw bytes, for the ciphers of this module.
    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Renders the material as 64 lowercase hex digits, in a buffer that is
    /// wiped on drop.
    fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(MATERIAL_HEX_LEN));
        for b in self.0 {
            out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses a key id written as exactly 8 hex digits (either case), non-zero.
fn parse_key_id(text: &str, origin: &KeyOrigin) -> Result<u32, KeySourceError> {
    let invalid = |reason| KeySourceError::InvalidId { origin: origin.clone(), reason };
    if text.len() != KEY_ID_HEX_LEN {
        return Err(invalid("must be exactly 8 hex digits"));
    }
    let mut id = 0u32;
    for c in text.bytes() {
        let Some(v) = hex_value(c) else {
            return Err(invalid("contains a character that is not a hex digit"));
        };
        id = (id << 4) | u32::from(v);
    }
    if id == 0 {
        return Err(invalid("must not be 00000000"));
    }
    Ok(id)
}

/// Renders a key id the way key files and logs show it: 8 lowercase hex digits.
pub fn format_key_id(id: u32) -> String {
    format!("{id:08x}")
}

/// Where key material was (to be) read from; used in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A key file at this path.
    File(PathBuf),
    /// An environment variable with this name.
    Env(String),
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::File(path) => write!(f, "key file {}", path.display()),
            KeyOrigin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Failure reading, parsing or writing key material. Never contains material.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Read {
        /// Which file.
        origin: KeyOrigin,
        /// The I/O error.
        source: io::Error,
    },
    /// The file could not be created or written.
    #[error("{origin}: cannot write: {source}")]
    Write {
        /// Which file.
        origin: KeyOrigin,
        /// The I/O error.
        source: io::Error,
    },
    /// The file's permissions or owner would let someone else read or
    /// replace the key (as ssh refuses such private keys).
    #[error(
        "{origin}: {reason}; fix it (chmod 600, owned by the user respseal runs as) or pass --allow-insecure-key-file"
    )]
    Insecure {
        /// Which file.
        origin: KeyOrigin,
        /// What is wrong, in words (no key material).
        reason: String,
    },
    /// `generate_key_file` refuses to replace an existing file.
    #[error("{origin}: already exists, refusing to overwrite it")]
    AlreadyExists {
        /// Which file.
        origin: KeyOrigin,
    },
    /// The file is not valid TOML of the expected shape (exactly the string
    /// entries `id` and `material`). The parser's own message is not shown
    /// because it may quote the offending text.
    #[error(
        "{origin}: not a valid key file{}: expected exactly two string entries, \
         id = \"<8 hex digits>\" and material = \"<64 hex digits>\"",
        line.map(|l| format!(" (problem at line {l})")).unwrap_or_default()
    )]
    Syntax {
        /// Which file.
        origin: KeyOrigin,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
    },
    /// The key id is malformed.
    #[error("{origin}: invalid key id: {reason}")]
    InvalidId {
        /// Which file.
        origin: KeyOrigin,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key material is malformed.
    #[error("{origin}: invalid key material: {reason}")]
    InvalidMaterial {
        /// Which file or variable.
        origin: KeyOrigin,
        /// What is wrong.
        reason: &'static str,
    },
    /// The environment variable is not set.
    #[error("{origin}: not set")]
    EnvNotSet {
        /// Which variable.
        origin: KeyOrigin,
    },
    /// The environment variable is not valid Unicode.
    #[error("{origin}: not valid UTF-8")]
    EnvNotUnicode {
        /// Which variable.
        origin: KeyOrigin,
    },
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Rng,
}

/// The on-disk shape of a key file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileToml {
    id: String,
    material: String,
}

/// Creates a new key file at `path` holding a random non-zero key id and 32
/// bytes of material from the OS RNG, with mode 0600 (on Unix), and returns the
/// new key id. Never overwrites: fails if `path` already exists.
///
/// The file looks like:
/// ```text
/// # respseal key file — keep secret
/// id = "0a1b2c3d"
/// material = "<64 lowercase hex digits>"
/// ```
///
/// # Errors
/// [`KeySourceError::AlreadyExists`], [`KeySourceError::Write`] or
/// [`KeySourceError::Rng`]. A partially written file is removed.
pub fn generate_key_file(path: &Path) -> Result<u32, KeySourceError> {
    let origin = KeyOrigin::File(path.to_path_buf());
    let id = random_key_id()?;
    let material = KeyMaterial::generate()?;
    let mut contents = Zeroizing::new(String::with_capacity(160));
    contents.push_str("# respseal key file — keep secret\n");
    contents.push_str("id = \"");
    contents.push_str(&format_key_id(id));
    contents.push_str("\"\nmaterial = \"");
    contents.push_str(&material.to_hex());
    contents.push_str("\"\n");

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeySourceError::AlreadyExists { origin });
        }
        Err(source) => return Err(KeySourceError::Write { origin, source }),
    };
    let written = file.write_all(contents.as_bytes()).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // Best effort: do not leave a truncated key file behind.
        let _ = fs::remove_file(path);
        return Err(KeySourceError::Write { origin, source });
    }
    Ok(id)
}

/// Draws a random non-zero key id from the OS RNG.
fn random_key_id() -> Result<u32, KeySourceError> {
    loop {
        let id = getrandom::u32().map_err(|_| KeySourceError::Rng)?;
        if id != 0 {
            return Ok(id);
        }
    }
}

/// Reads and strictly validates a key file, returning its key id and material.
///
/// Only the entries `id` (exactly 8 hex digits, non-zero) and `material`
/// (exactly 64 hex digits) are accepted, both as TOML strings; comments are
/// allowed. A file readable or writable by group or others, or owned by
/// another user, is refused ([`KeySourceError::Insecure`]).
///
/// # Errors
/// [`KeySourceError::Read`], [`KeySourceError::Syntax`],
/// [`KeySourceError::InvalidId`] or [`KeySourceError::InvalidMaterial`].
pub fn load_key_file(path: &Path) -> Result<(u32, KeyMaterial), KeySourceError> {
    load_key_file_checked(path, FileCheck::Strict).map(|(id, material, _)| (id, material))
}

/// How key files' permissions are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// A file readable or writable by group or others, or owned by another
    /// user, is refused.
    Strict,
    /// Such a file is loaded; the problem is returned so that it is logged
    /// (`--allow-insecure-key-file`).
    AllowInsecure,
}

/// What is wrong with a key file's owner or permissions, if anything.
pub fn key_file_problem(path: &Path) -> Result<Option<String>, io::Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Ok(Some(format!("mode {mode:04o} lets group or others read or write it")));
    }
    if let Some(me) = effective_uid()
        && meta.uid() != me
    {
        return Ok(Some(format!("owned by uid {}, not by uid {me} that respseal runs as", meta.uid())));
    }
    Ok(None)
}

/// This process's effective user id (from /proc: no libc needed).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// [`load_key_file`] with the permission check `check`; also returns the
/// problem that was allowed, if any, for the log.
///
/// # Errors
/// As [`load_key_file`], and [`KeySourceError::Insecure`] under
/// [`FileCheck::Strict`].
pub fn load_key_file_checked(
    path: &Path,
    check: FileCheck,
) -> Result<(u32, KeyMaterial, Option<String>), KeySourceError> {
    let origin = KeyOrigin::File(path.to_path_buf());
    let problem = match key_file_problem(path) {
        Ok(p) => p,
        Err(source) => return Err(KeySourceError::Read { origin, source }),
    };
    if let Some(reason) = &problem
        && check == FileCheck::Strict
    {
        return Err(KeySourceError::Insecure { origin, reason: reason.clone() });
    }
    let (id, material) = load_key_file_unchecked(path)?;
    Ok((id, material, problem))
}

fn load_key_file_unchecked(path: &Path) -> Result<(u32, KeyMaterial), KeySourceError> {
    let origin = KeyOrigin::File(path.to_path_buf());
    let text = match fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(source) => return Err(KeySourceError::Read { origin, source }),
    };
    let parsed: KeyFileToml = match toml::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let line = e.span().map(|span| {
                let newlines = text.bytes().take(span.start).filter(|&b| b == b'\n');
                newlines.count().saturating_add(1)
            });
            return Err(KeySourceError::Syntax { origin, line });
        }
    };
    let KeyFileToml { id, material } = parsed;
    let material_text = Zeroizing::new(material);
    let id = parse_key_id(&id, &origin)?;
    let material = KeyMaterial::from_hex(&material_text, &origin)?;
    Ok((id, material))
}

/// Reads key material from the environment variable `var`: 64 hex digits
/// (either case); surrounding ASCII whitespace such as a trailing newline is
/// ignored.
///
/// # Errors
/// [`KeySourceError::EnvNotSet`], [`KeySourceError::EnvNotUnicode`] or
/// [`KeySourceError::InvalidMaterial`], naming the variable but never its value.
pub fn material_from_env(var: &str) -> Result<KeyMaterial, KeySourceError> {
    let origin = KeyOrigin::Env(var.to_owned());
    let value = match std::env::var(var) {
        Ok(value) => Zeroizing::new(value),
        Err(std::env::VarError::NotPresent) => return Err(KeySourceError::EnvNotSet { origin }),
        Err(std::env::VarError::NotUnicode(raw)) => {
            #[cfg(unix)]
            {
                use std::os::unix::ffi::OsStringExt;
                drop(Zeroizing::new(raw.into_vec()));
            }
            #[cfg(not(unix))]
            drop(raw);
            return Err(KeySourceError::EnvNotUnicode { origin });
        }
    };
    KeyMaterial::from_hex(value.trim_ascii(), &origin)
}

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Seals new values and opens existing ones. At most one per keyring.
    Primary,
    /// Opens existing values but never seals (the previous primary during a
    /// rotation).
    DecryptOnly,
    /// Known but refused: values sealed under it fail with `KeyNotOpen`. No
    /// material is kept in memory.
    Disabled,
    /// Tombstone of a key whose material has been destroyed; values sealed
    /// under it fail with `KeyNotOpen` forever.
    Destroyed,
}

impl KeyState {
    /// The configuration spelling: `primary`, `decrypt-only`, `disabled` or
    /// `destroyed`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Primary => "primary",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Disabled => "disabled",
            KeyState::Destroyed => "destroyed",
        }
    }

    /// Whether values sealed under a key in this state may be opened.
    pub fn can_open(self) -> bool {
        matches!(self, KeyState::Primary | KeyState::DecryptOnly)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for KeyState {
    type Err = KeyringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "primary" => Ok(KeyState::Primary),
            "decrypt-only" => Ok(KeyState::DecryptOnly),
            "disabled" => Ok(KeyState::Disabled),
            "destroyed" => Ok(KeyState::Destroyed),
            _ => Err(KeyringError::UnknownState),
        }
    }
}

/// Problems assembling a keyring. Never contains material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Key id 0 is reserved and never valid.
    #[error("key id 00000000 is not allowed")]
    ZeroId,
    /// Two keys share an id.
    #[error("key id {} appears more than once", format_key_id(*.0))]
    DuplicateId(u32),
    /// More than one key is `Primary`.
    #[error(
        "keys {} and {} are both primary; exactly one key may be primary",
        format_key_id(*.first),
        format_key_id(*.second)
    )]
    MultiplePrimaries {
        /// The primary already in the keyring.
        first: u32,
        /// The second primary.
        second: u32,
    },
    /// A `Primary` or `DecryptOnly` key has no material.
    #[error("key {} is {state} but has no key material", format_key_id(*id))]
    MissingMaterial {
        /// The key.
        id: u32,
        /// Its state.
        state: KeyState,
    },
    /// A `Destroyed` key was given material or a material source.
    #[error(
        "key {} is destroyed but material was supplied for it; remove the source (and the material)",
        format_key_id(*.0)
    )]
    DestroyedWithMaterial(u32),
    /// A spec for a `Destroyed` key names a material source.
    #[error("a destroyed key must have no material source, but its spec names {0}")]
    DestroyedWithSource(KeyOrigin),
    /// A spec gives neither an id nor a key file to read one from.
    #[error("a {state} key spec needs an explicit id (only key files carry their own id)")]
    MissingId {
        /// The spec's state.
        state: KeyState,
    },
    /// A spec's explicit id differs from the id inside its key file.
    #[error(
        "{origin}: contains key id {} but the configuration expects {}",
        format_key_id(*found),
        format_key_id(*expected)
    )]
    IdMismatch {
        /// The key file.
        origin: KeyOrigin,
        /// Id in the configuration.
        expected: u32,
        /// Id in the file.
        found: u32,
    },
    /// A key state name was not one of `primary`, `decrypt-only`, `disabled`,
    /// `destroyed`.
    #[error("unknown key state; expected primary, decrypt-only, disabled or destroyed")]
    UnknownState,
    /// Loading a key's material failed.
    #[error(transparent)]
    Source(#[from] KeySourceError),
}

/// One key of a [`Keyring`]: its id, state and (when usable) its precomputed
/// cipher. `Debug` never shows material.
pub struct Key {
    id: u32,
    state: KeyState,
    /// Present exactly when `state.can_open()`.
    cipher: Option<Xaes256Gcm>,
}

impl Key {
    /// The key id (non-zero).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key's state.
    pub fn state(&self) -> KeyState {
        self.state
    }

    /// The cipher, if the key may open values (Primary or DecryptOnly).
    pub(super) fn opening_cipher(&self) -> Option<&Xaes256Gcm> {
        self.cipher.as_ref()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &format_args!("{:08x}", self.id))
            .field("state", &self.state)
            .field("material", &format_args!("{}", if self.cipher.is_some() { "[REDACTED]" } else { "none" }))
            .finish()
    }
}

/// The set of keys a proxy knows, indexed by key id.
///
/// Invariants: ids are non-zero and unique; at most one key is `Primary`;
/// keys that can open hold a cipher, the others hold no material.
#[derive(Default)]
pub struct Keyring {
    keys: BTreeMap<u32, Key>,
    primary: Option<u32>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.map(format_key_id))
            .field("keys", &self.keys.values().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring (can neither seal nor open).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. `material` is required for `Primary` and `DecryptOnly`,
    /// optional (and immediately discarded) for `Disabled`, and forbidden for
    /// `Destroyed`.
    ///
    /// # Errors
    /// [`KeyringError::ZeroId`], [`KeyringError::DuplicateId`],
    /// [`KeyringError::MultiplePrimaries`], [`KeyringError::MissingMaterial`]
    /// or [`KeyringError::DestroyedWithMaterial`]; the keyring is unchanged on
    /// error.
    pub fn insert(&mut self, id: u32, state: KeyState, material: Option<KeyMaterial>) -> Result<(), KeyringError> {
        if id == 0 {
            return Err(KeyringError::ZeroId);
        }
        if self.keys.contains_key(&id) {
            return Err(KeyringError::DuplicateId(id));
        }
        if state == KeyState::Primary
            && let Some(first) = self.primary
        {
            return Err(KeyringError::MultiplePrimaries { first, second: id });
        }
        let cipher = match (state, material) {
            (KeyState::Primary | KeyState::DecryptOnly, Some(material)) => Some(Xaes256Gcm::new(&material.0)),
            (KeyState::Primary | KeyState::DecryptOnly, None) => {
                return Err(KeyringError::MissingMaterial { id, state });
            }
            (KeyState::Disabled, _) => None,
            (KeyState::Destroyed, Some(_)) => {
                return Err(KeyringError::DestroyedWithMaterial(id));
            }
            (KeyState::Destroyed, None) => None,
        };
        if state == KeyState::Primary {
            self.primary = Some(id);
        }
        self.keys.insert(id, Key { id, state, cipher });
        Ok(())
    }

    /// Builds a keyring from specs, loading each key's material from its
    /// source.
    ///
    /// # Errors
    /// Any [`KeyringError`], including [`KeyringError::Source`] naming the
    /// file or variable that could not be loaded.
    pub fn from_specs(specs: &[KeySpec]) -> Result<Self, KeyringError> {
        Self::from_specs_checked(specs, FileCheck::Strict).map(|(k, _)| k)
    }

    /// [`Keyring::from_specs`] with the key-file check `check`; also returns
    /// the problems allowed (file and reason), for the log.
    ///
    /// # Errors
    /// As [`Keyring::from_specs`].
    pub fn from_specs_checked(specs: &[KeySpec], check: FileCheck) -> Result<(Self, Vec<String>), KeyringError> {
        let mut keyring = Self::new();
        let mut allowed = Vec::new();
        for spec in specs {
            let (id, material, problem) = spec.load(check)?;
            if let (Some(problem), Some(source)) = (problem, &spec.source) {
                allowed.push(format!("{}: {problem}", source.origin()));
            }
            keyring.insert(id, spec.state, material)?;
        }
        Ok((keyring, allowed))
    }

    /// The key with this id, if known (in any state).
    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys.get(&id)
    }

    /// The primary key, if there is one.
    pub fn primary(&self) -> Option<&Key> {
        self.primary.and_then(|id| self.keys.get(&id))
    }

    /// The primary key's id and cipher, used for sealing.
    pub(super) fn sealing_key(&self) -> Option<(u32, &Xaes256Gcm)> {
        let key = self.primary()?;
        Some((key.id, key.cipher.as_ref()?))
    }

    /// The primary key's id, if there is one.
    pub fn primary_id(&self) -> Option<u32> {
        self.primary
    }

    /// All keys in ascending id order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.values()
    }

    /// The key ids and their states, for the log (`0badf00d primary,
    /// 1234abcd decrypt-only`): never material.
    pub fn describe(&self) -> String {
        self.keys().map(|k| format!("{} {}", format_key_id(k.id), k.state)).collect::<Vec<_>>().join(", ")
    }

    /// Number of keys (in any state).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the keyring has no keys at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Where a key's material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key file (see [`load_key_file`]); it also carries the key id.
    File(PathBuf),
    /// An environment variable holding 64 hex digits (see
    /// [`material_from_env`]); the id must be given in the spec.
    Env(String),
}

impl KeySource {
    /// The file or variable this source reads, for messages.
    pub fn origin(&self) -> KeyOrigin {
        match self {
            KeySource::File(path) => KeyOrigin::File(path.clone()),
            KeySource::Env(var) => KeyOrigin::Env(var.clone()),
        }
    }
}

/// Configuration of one key, from which [`Keyring::from_specs`] builds the
/// keyring.
///
/// Rules: `id` is required unless `source` is a key file (if both are given
/// they must agree). `source` is required for `Primary` and `DecryptOnly`,
/// optional for `Disabled` (if given it is loaded and validated, then the
/// material is dropped), and must be absent for `Destroyed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Explicit key id, if any.
    pub id: Option<u32>,
    /// Desired state.
    pub state: KeyState,
    /// Where to read the material from, if anywhere.
    pub source: Option<KeySource>,
}

impl KeySpec {
    /// Resolves the id and loads the material of this spec.
    fn load(&self, check: FileCheck) -> Result<(u32, Option<KeyMaterial>, Option<String>), KeyringError> {
        if self.state == KeyState::Destroyed
            && let Some(source) = &self.source
        {
            return Err(KeyringError::DestroyedWithSource(source.origin()));
        }
        match (&self.source, self.id) {
            (None, None) | (Some(KeySource::Env(_)), None) => Err(KeyringError::MissingId { state: self.state }),
            (None, Some(id)) => Ok((id, None, None)),
            (Some(KeySource::Env(var)), Some(id)) => Ok((id, Some(material_from_env(var)?), None)),
            (Some(KeySource::File(path)), expected) => {
                let (found, material, problem) = load_key_file_checked(path, check)?;
                if let Some(expected) = expected
                    && expected != found
                {
                    return Err(KeyringError::IdMismatch { origin: KeyOrigin::File(path.clone()), expected, found });
                }
                Ok((found, Some(material), problem))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key file only its owner can read (as keygen writes them).
    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn key_files_others_can_read_or_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "k.key", &format!("id = \"0a1b2c3d\"\nmaterial = \"{GOOD_MATERIAL}\"\n"));
        assert!(load_key_file(&path).is_ok());
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_key_file(&path).unwrap_err();
            assert!(matches!(err, KeySourceError::Insecure { .. }), "mode {mode:o}: {err}");
            assert!(err.to_string().contains(&format!("mode {mode:04o}")), "{err}");
            let (_, _, allowed) = load_key_file_checked(&path, FileCheck::AllowInsecure).unwrap();
            assert!(allowed.is_some_and(|p| p.contains("group or others")));
        }
    }

    const GOOD_MATERIAL: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k1.key");
        let id = generate_key_file(&path).unwrap();
        assert_ne!(id, 0);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# respseal key file — keep secret\n"));
        assert!(text.contains(&format!("id = \"{}\"", format_key_id(id))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (loaded_id, material) = load_key_file(&path).unwrap();
        assert_eq!(loaded_id, id);
        // The material line is 64 lowercase hex digits equal to what was loaded.
        let line = text.lines().find(|l| l.starts_with("material")).unwrap();
        assert_eq!(line, format!("material = \"{}\"", material.to_hex().as_str()));
        assert_eq!(material.to_hex().len(), 64);
        assert!(material.to_hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Two generated files differ in id and material.
        let path2 = dir.path().join("k2.key");
        let id2 = generate_key_file(&path2).unwrap();
        let (_, material2) = load_key_file(&path2).unwrap();
        assert_ne!(id, id2);
        assert_ne!(material.0, material2.0);
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "exists.key", "precious");
        let err = generate_key_file(&path).unwrap_err();
        assert!(matches!(err, KeySourceError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
        assert!(err.to_string().contains("exists.key"));
    }

    #[test]
    fn loads_hand_written_file_with_comments_and_uppercase() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "k.key",
            &format!("# comment\nid = \"0A1B2C3D\" # trailing\nmaterial = \"{}\"\n", GOOD_MATERIAL.to_uppercase()),
        );
        let (id, material) = load_key_file(&path).unwrap();
        assert_eq!(id, 0x0a1b_2c3d);
        assert_eq!(hex(&material.0), GOOD_MATERIAL);
    }

    #[test]
    fn bad_key_files_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "abababababababababababababababababababababababababababababababab";
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "not a valid key file"),
            ("missing material", "id = \"0a1b2c3d\"\n".into(), "not a valid key file"),
            ("missing id", format!("material = \"{secret}\"\n"), "not a valid key file"),
            (
                "unknown field",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{secret}\"\nextra = 1\n"),
                "not a valid key file (problem at line 3)",
            ),
            (
                "id zero",
                format!("id = \"00000000\"\nmaterial = \"{secret}\"\n"),
                "invalid key id: must not be 00000000",
            ),
            (
                "id short",
                format!("id = \"a1b2c3d\"\nmaterial = \"{secret}\"\n"),
                "invalid key id: must be exactly 8 hex digits",
            ),
            (
                "id long",
                format!("id = \"0a1b2c3d4\"\nmaterial = \"{secret}\"\n"),
                "invalid key id: must be exactly 8 hex digits",
            ),
            (
                "id sign",
                format!("id = \"+a1b2c3d\"\nmaterial = \"{secret}\"\n"),
                "invalid key id: contains a character",
            ),
            (
                "id integer",
                format!("id = 12345678\nmaterial = \"{secret}\"\n"),
                "not a valid key file (problem at line 1)",
            ),
            (
                "material short",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{}\"\n", &secret[..62]),
                "invalid key material: must be exactly 64",
            ),
            (
                "material long",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{secret}ab\"\n"),
                "invalid key material: must be exactly 64",
            ),
            (
                "material non-hex",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{}zz\"\n", &secret[..62]),
                "invalid key material: contains a character",
            ),
            (
                "material multibyte",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{}é\"\n", &secret[..62]),
                "invalid key material: contains a character",
            ),
            (
                "material as integer",
                "id = \"0a1b2c3d\"\nmaterial = 1234567890123456\n".into(),
                "not a valid key file (problem at line 2)",
            ),
            ("not toml", format!("id: 0a1b2c3d\nmaterial: {secret}\n"), "not a valid key file"),
            (
                "duplicate key",
                format!("id = \"0a1b2c3d\"\nmaterial = \"{secret}\"\nmaterial = \"{secret}\"\n"),
                "not a valid key file",
            ),
        ];
        for (name, contents, expected) in cases {
            let path = write(dir.path(), "bad.key", &contents);
            let err = load_key_file(&path).expect_err(name);
            let msg = err.to_string();
            assert!(msg.contains("bad.key"), "{name}: {msg}");
            assert!(msg.contains(expected), "{name}: {msg}");
            assert!(!msg.contains(&secret[..16]), "{name} leaks material: {msg}");
            assert!(!msg.contains("1234567890"), "{name} leaks value: {msg}");
            assert!(!format!("{err:?}").contains(&secret[..16]), "{name}");
        }
        let missing = load_key_file(&dir.path().join("nope.key")).unwrap_err();
        assert!(matches!(missing, KeySourceError::Read { .. }));
        assert!(missing.to_string().contains("nope.key"));
    }

    #[test]
    fn material_from_env_validates() {
        // SAFETY: these variable names are used by this test only, and no
        // other test reads or writes them.
        unsafe {
            std::env::set_var("RESPSEAL_TEST_KEY_GOOD", format!("{GOOD_MATERIAL}\n"));
            std::env::set_var("RESPSEAL_TEST_KEY_BAD", "abcd1234");
        }
        let m = material_from_env("RESPSEAL_TEST_KEY_GOOD").unwrap();
        assert_eq!(hex(&m.0), GOOD_MATERIAL);
        let err = material_from_env("RESPSEAL_TEST_KEY_BAD").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("RESPSEAL_TEST_KEY_BAD"), "{msg}");
        assert!(msg.contains("64 hex digits"), "{msg}");
        assert!(!msg.contains("abcd1234"), "{msg}");
        let err = material_from_env("RESPSEAL_TEST_KEY_UNSET").unwrap_err();
        assert!(matches!(err, KeySourceError::EnvNotSet { .. }));
        assert!(err.to_string().contains("RESPSEAL_TEST_KEY_UNSET"));
    }

    #[test]
    fn keyring_structure_rules() {
        let m = || Some(KeyMaterial::from_bytes([0x11; 32]));
        let mut ring = Keyring::new();
        assert!(matches!(ring.insert(0, KeyState::Primary, m()), Err(KeyringError::ZeroId)));
        ring.insert(1, KeyState::Primary, m()).unwrap();
        assert!(matches!(ring.insert(1, KeyState::DecryptOnly, m()), Err(KeyringError::DuplicateId(1))));
        assert!(matches!(
            ring.insert(2, KeyState::Primary, m()),
            Err(KeyringError::MultiplePrimaries { first: 1, second: 2 })
        ));
        assert!(matches!(
            ring.insert(3, KeyState::DecryptOnly, None),
            Err(KeyringError::MissingMaterial { id: 3, .. })
        ));
        assert!(matches!(ring.insert(4, KeyState::Destroyed, m()), Err(KeyringError::DestroyedWithMaterial(4))));
        ring.insert(5, KeyState::Disabled, m()).unwrap();
        ring.insert(6, KeyState::Destroyed, None).unwrap();
        ring.insert(7, KeyState::Disabled, None).unwrap();
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.primary_id(), Some(1));
        assert!(ring.get(5).unwrap().opening_cipher().is_none());
        assert!(ring.get(6).unwrap().opening_cipher().is_none());
        assert!(ring.get(1).unwrap().opening_cipher().is_some());
        assert_eq!(ring.keys().map(Key::id).collect::<Vec<_>>(), vec![1, 5, 6, 7]);
        // A keyring without a primary is valid (it can still open).
        let mut no_primary = Keyring::new();
        no_primary.insert(9, KeyState::DecryptOnly, m()).unwrap();
        assert!(no_primary.primary().is_none());
    }

    #[test]
    fn debug_never_shows_material() {
        let bytes = [0xa5u8; 32];
        let mut ring = Keyring::new();
        ring.insert(0x0102_0304, KeyState::Primary, Some(KeyMaterial::from_bytes(bytes))).unwrap();
        ring.insert(0x0506_0708, KeyState::Destroyed, None).unwrap();
        let dbg = format!("{ring:?} {ring:#?}");
        assert!(dbg.contains("01020304"), "{dbg}");
        assert!(dbg.contains("[REDACTED]"), "{dbg}");
        assert!(!dbg.contains("a5a5"), "{dbg}");
        assert!(!dbg.contains("165, 165"), "{dbg}"); // 0xa5 as a byte list
        let material = KeyMaterial::from_bytes(bytes);
        assert_eq!(format!("{material:?}"), "KeyMaterial([REDACTED])");
    }

    /// Rotation: the old primary becomes DecryptOnly and still opens old
    /// values; new values carry the new primary's id.
    #[test]
    fn rotation_old_key_decrypt_only_still_opens() {
        use crate::crypto::envelope::{Binding, inspect, open, seal};
        let b = Binding::string(b"app", b"sess:1");
        let mut before = Keyring::new();
        before.insert(0x0000_0a01, KeyState::Primary, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        let old = seal(&before, &b, b"old value", 100).unwrap();
        assert_eq!(inspect(&old).unwrap().key_id, 0x0000_0a01);

        let mut after = Keyring::new();
        after.insert(0x0000_0b02, KeyState::Primary, Some(KeyMaterial::from_bytes([2; 32]))).unwrap();
        after.insert(0x0000_0a01, KeyState::DecryptOnly, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        assert_eq!(open(&after, &b, &old, 200, None).unwrap(), b"old value");
        let new = seal(&after, &b, b"new value", 200).unwrap();
        assert_eq!(inspect(&new).unwrap().key_id, 0x0000_0b02);
        assert_eq!(open(&after, &b, &new, 200, None).unwrap(), b"new value");
        // The pre-rotation keyring does not know the new key.
        assert_eq!(open(&before, &b, &new, 200, None), Err(crate::crypto::OpenError::UnknownKey));
    }

    /// Disabled and Destroyed keys refuse with KeyNotOpen; ids not in the
    /// keyring give UnknownKey; a keyring without primary still opens.
    #[test]
    fn disabled_destroyed_and_unknown_keys_refuse() {
        use crate::crypto::OpenError;
        use crate::crypto::envelope::{Binding, open, seal};
        let b = Binding::string(b"app", b"k");
        let mut ring = Keyring::new();
        ring.insert(1, KeyState::Primary, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        let sealed = seal(&ring, &b, b"v", 100).unwrap();

        for state in [KeyState::Disabled, KeyState::Destroyed] {
            let mut refused = Keyring::new();
            refused.insert(1, state, None).unwrap();
            assert_eq!(open(&refused, &b, &sealed, 100, None), Err(OpenError::KeyNotOpen), "{state}");
        }
        // Disabled even when material was supplied: it is dropped, not kept.
        let mut disabled = Keyring::new();
        disabled.insert(1, KeyState::Disabled, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        assert_eq!(open(&disabled, &b, &sealed, 100, None), Err(OpenError::KeyNotOpen));

        let mut other = Keyring::new();
        other.insert(2, KeyState::Primary, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        assert_eq!(open(&other, &b, &sealed, 100, None), Err(OpenError::UnknownKey));
        assert_eq!(open(&Keyring::new(), &b, &sealed, 100, None), Err(OpenError::UnknownKey));

        let mut open_only = Keyring::new();
        open_only.insert(1, KeyState::DecryptOnly, Some(KeyMaterial::from_bytes([1; 32]))).unwrap();
        assert_eq!(open(&open_only, &b, &sealed, 100, None).unwrap(), b"v");
    }

    #[test]
    fn keyring_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
        assert_send_sync::<Xaes256Gcm>();
    }

    #[test]
    fn key_state_names_round_trip() {
        for state in [KeyState::Primary, KeyState::DecryptOnly, KeyState::Disabled, KeyState::Destroyed] {
            assert_eq!(state.as_str().parse::<KeyState>().unwrap(), state);
        }
        assert!("Primary".parse::<KeyState>().is_err());
    }

    #[test]
    fn from_specs_loads_sources_and_checks_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p1 = dir.path().join("primary.key");
        let id1 = generate_key_file(&p1).unwrap();
        let p2 = dir.path().join("old.key");
        let id2 = generate_key_file(&p2).unwrap();
        // SAFETY: this variable is used by this test only.
        unsafe { std::env::set_var("RESPSEAL_TEST_KEY_SPEC", GOOD_MATERIAL) };
        let ring = Keyring::from_specs(&[
            KeySpec { id: None, state: KeyState::Primary, source: Some(KeySource::File(p1.clone())) },
            KeySpec { id: Some(id2), state: KeyState::DecryptOnly, source: Some(KeySource::File(p2.clone())) },
            KeySpec {
                id: Some(0x0000_00e1),
                state: KeyState::DecryptOnly,
                source: Some(KeySource::Env("RESPSEAL_TEST_KEY_SPEC".into())),
            },
            KeySpec { id: Some(0x0000_00d1), state: KeyState::Disabled, source: None },
            KeySpec { id: Some(0x0000_00d2), state: KeyState::Destroyed, source: None },
        ])
        .unwrap();
        assert_eq!(ring.primary_id(), Some(id1));
        assert_eq!(ring.len(), 5);
        assert_eq!(ring.get(id2).unwrap().state(), KeyState::DecryptOnly);

        let err = |specs: &[KeySpec]| Keyring::from_specs(specs).unwrap_err();
        assert!(matches!(
            err(&[KeySpec { id: Some(id1 ^ 1), state: KeyState::Primary, source: Some(KeySource::File(p1.clone())) }]),
            KeyringError::IdMismatch { .. }
        ));
        assert!(matches!(
            err(&[KeySpec {
                id: None,
                state: KeyState::Primary,
                source: Some(KeySource::Env("RESPSEAL_TEST_KEY_SPEC".into())),
            }]),
            KeyringError::MissingId { .. }
        ));
        assert!(matches!(
            err(&[KeySpec { id: Some(5), state: KeyState::Primary, source: None }]),
            KeyringError::MissingMaterial { id: 5, .. }
        ));
        assert!(matches!(
            err(&[KeySpec { id: None, state: KeyState::Destroyed, source: Some(KeySource::File(p1.clone())) }]),
            KeyringError::DestroyedWithSource(KeyOrigin::File(_))
        ));
        let missing = err(&[KeySpec {
            id: Some(7),
            state: KeyState::DecryptOnly,
            source: Some(KeySource::Env("RESPSEAL_TEST_KEY_NOT_SET".into())),
        }]);
        assert!(missing.to_string().contains("RESPSEAL_TEST_KEY_NOT_SET"));
        let dup = err(&[
            KeySpec { id: None, state: KeyState::Primary, source: Some(KeySource::File(p1.clone())) },
            KeySpec { id: Some(id1), state: KeyState::Disabled, source: None },
        ]);
        assert!(matches!(dup, KeyringError::DuplicateId(id) if id == id1));
    }
}
