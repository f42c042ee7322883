//! Mosquitto 2.0 `password_file` support: loading the file and checking CONNECT credentials against it.
//!
//! This module owns the file format and the password check, and nothing else: what to do with a client
//! that sent no username (`allow_anonymous`), reloading, and logging are the caller's. It mirrors
//! Mosquitto 2.0.x's `src/security_default.c` (`pwfile__parse`, `unpwd__decode_passwords`,
//! `mosquitto_unpwd_check_default`, `pw__digest`), checked against Debian's mosquitto 2.0.11 broker:
//!
//! * The file is read line by line; a line whose first byte is `#`, or that has no `:`, is skipped.
//!   The username and the password hash are the first two `strtok(":")` tokens (so empty fields are
//!   skipped over: `user::hash` and `:user:hash` both work, and anything after a third `:` is ignored),
//!   each trimmed of C `isspace` blanks (which removes the `\n`/`\r\n`).
//! * The hash is `$6$<salt>$<hash>` (SHA-512 over password then salt) or `$7$<iterations>$<salt>$<hash>`
//!   (PBKDF2-HMAC-SHA512), split with `strtok("$")`; salt and hash are base64 of exactly 12 and 64
//!   bytes. `$argon2id$v=19$m=M,t=T,p=P$salt$hash` (Mosquitto 2.1, libargon2's unpadded PHC string) is
//!   read as well. An entry that fails is removed and reported; the rest of the file still loads. A file that
//!   cannot be opened is an error, which stops the broker from starting.
//! * A zero-length MQTT password reaches Mosquitto as "no password", and the password is hashed as a C
//!   string, so it ends at its first NUL byte. Digests are compared without an early exit.
//!
//! Messages about skipped or removed lines come back as [`Warning`]s for the caller to log, so parsing
//! stays pure and testable. Where shardmq deliberately differs (duplicate usernames, lines that could
//! never match a client), the item's documentation says so.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use thiserror::Error;

/// Salt length Mosquitto writes and insists on when reading (`salt_len == 12`).
pub const SALT_LEN: usize = 12;

/// Length of a SHA-512 digest, which is also the PBKDF2 output length Mosquitto uses.
pub const HASH_LEN: usize = 64;

/// `mosquitto_passwd` 2.0's default PBKDF2 iteration count, so generated files look like its output.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 101;

/// Mosquitto drops a line whose username or password field is longer than this.
const MAX_FIELD_LEN: usize = 65535;

/// Mosquitto stores iterations in a C `int`; a larger count could not be read back the same.
const MAX_ITERATIONS: u32 = i32::MAX as u32;

/// Base64 as OpenSSL's EVP encoder writes it (standard alphabet, `=` padding). Decoding allows non-zero
/// trailing bits because OpenSSL ignores them; Mosquitto 2.0.11 accepts such a hash.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Base64 as libargon2 writes it in PHC strings: standard alphabet, no padding.
const BASE64_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Why a password file could not be loaded at all (Mosquitto refuses to start in these cases).
#[derive(Debug, Error)]
pub enum PasswordFileError {
    /// Mosquitto: `Error: Unable to open pwfile "%s".`
    #[error("unable to open password file \"{}\": {source}", path.display())]
    Open {
        /// The configured `password_file`.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file opened but could not be read (a directory, an I/O error).
    #[error("unable to read password file \"{}\": {source}", path.display())]
    Read {
        /// The configured `password_file`.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Why one entry's password hash was rejected; the wording follows Mosquitto's log messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EntryError {
    /// A `$`-separated field is missing (this includes an empty or blank password field).
    #[error("invalid password hash")]
    InvalidHash,
    /// The first field is neither `6` nor `7` (a plain-text password lands here too).
    #[error("invalid password hash type")]
    InvalidHashType,
    /// The `$7$` iteration count reads (as C `atoi` would) as less than 1.
    #[error("invalid hash iterations")]
    InvalidIterations,
    /// The salt is not base64 or does not decode to exactly [`SALT_LEN`] bytes.
    #[error("unable to decode password salt")]
    InvalidSalt,
    /// The hash is not base64 or does not decode to exactly [`HASH_LEN`] bytes.
    #[error("unable to decode password")]
    InvalidDigest,
}

/// How serious a [`Warning`] is, matching the level Mosquitto logs the same condition at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Mosquitto logs it at NOTICE with a `Warning:` prefix (a line it could not use).
    Warning,
    /// Mosquitto logs it at ERR (an entry removed because its hash is unusable).
    Error,
}

/// Something in the file that was skipped or removed while loading, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line number in the file.
    pub line: usize,
    /// What happened.
    pub kind: WarningKind,
}

/// The conditions a [`Warning`] reports. Usernames are shown with `{:?}` so control characters in a
/// hand-edited file cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// Username longer than 65535 bytes; the line is skipped (it is not shown, being that long).
    UsernameTooLong,
    /// Password field longer than 65535 bytes; the line is skipped.
    PasswordTooLong {
        /// The username on that line (lossily decoded if it is not UTF-8).
        username: String,
    },
    /// A username with no password field at all (`user:` on the last line, without a newline).
    /// `user:` followed by a newline is [`EntryError::InvalidHash`] instead, as in Mosquitto.
    MissingPassword {
        /// The username on that line (lossily decoded if it is not UTF-8).
        username: String,
    },
    /// shardmq only: the username is not UTF-8. Mosquitto keeps such an entry, but MQTT usernames are
    /// UTF-8, so no client could ever match it.
    UsernameNotUtf8,
    /// shardmq only: the username is empty after trimming. Mosquitto keeps such an entry, but it reads a
    /// zero-length CONNECT username as "no username", so no client could ever match it.
    EmptyUsername,
    /// The entry's password hash is unusable and the entry was removed.
    EntryRemoved {
        /// The user whose entry was removed.
        username: String,
        /// What was wrong with the hash.
        reason: EntryError,
    },
    /// shardmq only: the iteration count overflows a C `int`. The entry is kept with the count that
    /// Mosquitto's `atoi` produces on 64-bit glibc (e.g. `4294967397` becomes 101), so it behaves the same.
    IterationsWrapped {
        /// The user concerned.
        username: String,
        /// The iteration field as written in the file.
        written: String,
        /// The iteration count used.
        used: u32,
    },
    /// shardmq only: the username already has a valid entry; this later one replaces it. Mosquitto picks
    /// by its hash table's layout: the later entry in files of a few hundred users (tested with up to 300),
    /// the earlier one in larger files (tested from 1000). The later one is what an admin who appended a
    /// line meant, so shardmq always takes it and says so.
    Duplicate {
        /// The duplicated username.
        username: String,
        /// Line of the entry that was replaced.
        previous_line: usize,
    },
}

impl Warning {
    /// The level to log this at; see [`Severity`].
    pub fn severity(&self) -> Severity {
        match self.kind {
            WarningKind::EntryRemoved { .. } => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            WarningKind::UsernameTooLong => write!(f, "invalid line, username too long"),
            WarningKind::PasswordTooLong { username } => {
                write!(f, "invalid line for user {username:?}, password too long")
            }
            WarningKind::MissingPassword { username } => {
                write!(f, "invalid line for user {username:?}, no password hash")
            }
            WarningKind::UsernameNotUtf8 => {
                write!(
                    f,
                    "username is not valid UTF-8 and can never match, ignoring line"
                )
            }
            WarningKind::EmptyUsername => {
                write!(f, "empty username can never match, ignoring line")
            }
            WarningKind::EntryRemoved { username, reason } => {
                write!(f, "{reason} for user {username:?}, removing entry")
            }
            WarningKind::IterationsWrapped {
                username,
                written,
                used,
            } => write!(
                f,
                "hash iterations {written:?} for user {username:?} overflow a C int; \
                 using {used} as Mosquitto does"
            ),
            WarningKind::Duplicate {
                username,
                previous_line,
            } => write!(
                f,
                "user {username:?} is already defined on line {previous_line}; \
                 this later entry replaces it"
            ),
        }
    }
}

/// Which digest an entry uses, as named by its `$6$` / `$7$` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `$6$`: one SHA-512 over password bytes then salt (Mosquitto 1.6 and earlier wrote these).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations (always at least 1).
    Pbkdf2Sha512 {
        /// PBKDF2 rounds.
        iterations: u32,
    },
    /// `$argon2id$v=19$m=M,t=T,p=P$salt$hash` (PHC string, as libargon2 and Mosquitto 2.1 write it):
    /// Argon2id version 0x13 with M KiB of memory, T passes and P lanes.
    Argon2id {
        /// Memory in KiB.
        m_cost: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
}

impl HashAlgorithm {
    /// The digest of `password` with `salt`, `len` bytes long (64 but for Argon2id, whose output
    /// length is that of the stored hash). Argon2id can fail (memory); the result is then empty, which
    /// matches no stored hash.
    fn digest(self, password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![
            0u8;
            if matches!(self, HashAlgorithm::Argon2id { .. }) {
                len
            } else {
                HASH_LEN
            }
        ];
        match self {
            HashAlgorithm::Sha512 => {
                let digest = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                out.copy_from_slice(&digest);
            }
            HashAlgorithm::Pbkdf2Sha512 { iterations } => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            }
            HashAlgorithm::Argon2id {
                m_cost,
                t_cost,
                p_cost,
            } => {
                let hashed =
                    argon2::Params::new(m_cost, t_cost, p_cost, Some(len)).and_then(|params| {
                        argon2::Argon2::new(
                            argon2::Algorithm::Argon2id,
                            argon2::Version::V0x13,
                            params,
                        )
                        .hash_password_into(password, salt, &mut out)
                    });
                if hashed.is_err() {
                    out.clear();
                }
            }
        }
        out
    }
}

/// One user's decoded password hash.
#[derive(Clone)]
struct Entry {
    /// Line it came from, for duplicate reports.
    line: usize,
    algorithm: HashAlgorithm,
    /// 12 bytes for `$6$` / `$7$`; Argon2id salts vary (Mosquitto 2.1 writes 64 bytes).
    salt: Vec<u8>,
    /// 64 bytes for `$6$` / `$7$`; Argon2id's is as long as written.
    hash: Vec<u8>,
}

/// A loaded password file: usernames and their decoded hashes. Plain data, cheap to share read-only.
#[derive(Clone, Default)]
pub struct PasswordFile {
    entries: HashMap<String, Entry>,
}

/// Leaves the hashes out, so a stray `{:?}` in a log line does not publish them for offline cracking.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads and parses `path`. Only failing to open or read the file is an error; bad lines are
    /// skipped and reported in the returned warnings, as Mosquitto does.
    pub fn load(path: &Path) -> Result<(Self, Vec<Warning>), PasswordFileError> {
        let mut file = File::open(path).map_err(|source| PasswordFileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|source| PasswordFileError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::parse_bytes(&data))
    }

    /// Parses password file text; see [`PasswordFile::parse_bytes`].
    pub fn parse(text: &str) -> (Self, Vec<Warning>) {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses password file contents. Takes bytes because Mosquitto reads the file as bytes: a line
    /// with a non-UTF-8 username is reported on its own instead of failing the whole file.
    pub fn parse_bytes(data: &[u8]) -> (Self, Vec<Warning>) {
        let mut file = PasswordFile::default();
        let mut warnings = Vec::new();
        // Lines keep their '\n', as from fgets: "user:\n" then has a (blank) password field, which
        // Mosquitto reports differently from "user:" at the end of the file.
        for (index, raw_line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let mut warn = |kind| warnings.push(Warning { line, kind });
            // Mosquitto handles the line with C string functions, which stop at the first NUL.
            let text = match raw_line.iter().position(|&b| b == 0) {
                Some(end) => &raw_line[..end],
                None => raw_line,
            };
            if text.first() == Some(&b'#') || !text.contains(&b':') {
                continue;
            }
            let mut fields = c_tokens(text, b':');
            let Some(username) = fields.next() else {
                continue;
            };
            let username = trim_blanks(username);
            if username.len() > MAX_FIELD_LEN {
                warn(WarningKind::UsernameTooLong);
                continue;
            }
            let Some(hash_field) = fields.next() else {
                warn(WarningKind::MissingPassword {
                    username: String::from_utf8_lossy(username).into_owned(),
                });
                continue;
            };
            let hash_field = trim_blanks(hash_field);
            if hash_field.len() > MAX_FIELD_LEN {
                warn(WarningKind::PasswordTooLong {
                    username: String::from_utf8_lossy(username).into_owned(),
                });
                continue;
            }
            let Ok(username) = std::str::from_utf8(username) else {
                warn(WarningKind::UsernameNotUtf8);
                continue;
            };
            if username.is_empty() {
                warn(WarningKind::EmptyUsername);
                continue;
            }
            let decoded = match decode_hash(hash_field) {
                Ok(decoded) => decoded,
                Err(reason) => {
                    warn(WarningKind::EntryRemoved {
                        username: username.to_owned(),
                        reason,
                    });
                    continue;
                }
            };
            if let Some(written) = decoded.wrapped_iterations {
                if let HashAlgorithm::Pbkdf2Sha512 { iterations } = decoded.algorithm {
                    warn(WarningKind::IterationsWrapped {
                        username: username.to_owned(),
                        written,
                        used: iterations,
                    });
                }
            }
            let entry = Entry {
                line,
                algorithm: decoded.algorithm,
                salt: decoded.salt,
                hash: decoded.hash,
            };
            if let Some(previous) = file.entries.insert(username.to_owned(), entry) {
                warn(WarningKind::Duplicate {
                    username: username.to_owned(),
                    previous_line: previous.line,
                });
            }
        }
        (file, warnings)
    }

    /// Whether `username` may connect with `password`, as `mosquitto_unpwd_check_default` decides for
    /// a client that sent a username: the user must be in the file and the password's digest must
    /// equal the stored one. `None` and a zero-length password are both "no password" (Mosquitto reads
    /// a zero-length binary field as absent) and are refused. The password is cut at its first NUL
    /// byte because Mosquitto hashes it as a C string. An unknown user returns without hashing, as in
    /// Mosquitto. A known user costs one digest at the entry's iteration count, which the file sets
    /// (101 takes well under a millisecond), so this blocks the calling thread for that long.
    pub fn check(&self, username: &str, password: Option<&[u8]>) -> bool {
        let Some(entry) = self.entries.get(username) else {
            return false;
        };
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return false;
        };
        let password = match password.iter().position(|&b| b == 0) {
            Some(end) => &password[..end],
            None => password,
        };
        let digest = entry
            .algorithm
            .digest(password, &entry.salt, entry.hash.len());
        constant_time_eq(&digest, &entry.hash)
    }

    /// Whether the file has a usable entry for `username`.
    pub fn contains_user(&self, username: &str) -> bool {
        self.entries.contains_key(username)
    }

    /// The digest `username`'s entry uses, or `None` if there is no such entry.
    pub fn hash_algorithm(&self, username: &str) -> Option<HashAlgorithm> {
        self.entries.get(username).map(|entry| entry.algorithm)
    }

    /// Number of usable entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry survived loading (every username is then refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why [`hash_password_pbkdf2`] could not make an entry.
#[derive(Debug, Error)]
pub enum HashPasswordError {
    /// Mosquitto reads the count into a C `int` and refuses 0, so only `1..=i32::MAX` round-trips.
    #[error("PBKDF2 iteration count {0} is outside 1..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// Mosquitto hashes only up to a password's first NUL, so such a password could never match.
    #[error("password contains a NUL byte, which Mosquitto-compatible checks cut the password at")]
    ContainsNul,
    /// The salt comes from the kernel; without it there is no safe entry to write.
    #[error("unable to read a random salt from /dev/urandom")]
    Random(#[source] io::Error),
    /// Argon2id could not run (it needs 46 MiB of memory).
    #[error("Argon2id hashing failed")]
    Argon2,
}

/// Makes a `$7$<iterations>$<salt>$<hash>` password field, as `mosquitto_passwd` 2.0 writes by default
/// (use [`DEFAULT_PBKDF2_ITERATIONS`] for its count), with a fresh 12-byte salt from `/dev/urandom`.
/// Like `mosquitto_passwd`, an empty password is allowed, though Mosquitto-style checks never accept a
/// zero-length CONNECT password.
pub fn hash_password_pbkdf2(password: &[u8], iterations: u32) -> Result<String, HashPasswordError> {
    // Validate before touching /dev/urandom so that bad input is reported as such.
    validate_new_password(password, iterations)?;
    hash_password_pbkdf2_with_salt(password, iterations, &random_salt::<SALT_LEN>()?)
}

/// Makes a `$6$<salt>$<hash>` password field (one SHA-512 over password then salt), as
/// `mosquitto_passwd -H sha512` writes for Mosquitto 1.6 and earlier, with a fresh 12-byte salt.
pub fn hash_password_sha512(password: &[u8]) -> Result<String, HashPasswordError> {
    validate_new_password(password, 1)?;
    hash_password_sha512_with_salt(password, &random_salt::<SALT_LEN>()?)
}

/// [`hash_password_sha512`] with a caller-chosen salt, for tests. Do not reuse salts for real entries.
pub fn hash_password_sha512_with_salt(
    password: &[u8],
    salt: &[u8; SALT_LEN],
) -> Result<String, HashPasswordError> {
    validate_new_password(password, 1)?;
    let hash = HashAlgorithm::Sha512.digest(password, salt, HASH_LEN);
    Ok(format!(
        "$6${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    ))
}

/// Whether `field` is a password hash this module can check (`$6$` or `$7$`, well formed), e.g. so
/// that converting a plain-text file does not hash a hash.
pub fn is_password_hash(field: &[u8]) -> bool {
    field.starts_with(b"$") && decode_hash(field).is_ok()
}

/// Mosquitto 2.1's Argon2id parameters (`MOSQ_ARGON2_T`, `_M`, `_P`; salt and hash of 64 bytes).
pub const ARGON2ID_T_COST: u32 = 1;
/// Memory in KiB; see [`ARGON2ID_T_COST`].
pub const ARGON2ID_M_COST: u32 = 47104;
/// Lanes; see [`ARGON2ID_T_COST`].
pub const ARGON2ID_P_COST: u32 = 1;

/// The most memory (KiB, so 1 GiB) an `$argon2id$` entry may ask for; Mosquitto 2.1 writes 47104.
const MAX_ARGON2_M_COST: u32 = 1 << 20;

/// Makes a `$argon2id$v=19$m=47104,t=1,p=1$<salt>$<hash>` field with a fresh 64-byte salt, as
/// Mosquitto 2.1's `mosquitto_passwd -H argon2id` writes. Mosquitto 2.0 cannot read it.
pub fn hash_password_argon2id(password: &[u8]) -> Result<String, HashPasswordError> {
    validate_new_password(password, 1)?;
    hash_password_argon2id_with_salt(password, &random_salt::<HASH_LEN>()?)
}

/// [`hash_password_argon2id`] with a caller-chosen salt, for tests. Do not reuse salts for real entries.
pub fn hash_password_argon2id_with_salt(
    password: &[u8],
    salt: &[u8],
) -> Result<String, HashPasswordError> {
    validate_new_password(password, 1)?;
    let algorithm = HashAlgorithm::Argon2id {
        m_cost: ARGON2ID_M_COST,
        t_cost: ARGON2ID_T_COST,
        p_cost: ARGON2ID_P_COST,
    };
    let hash = algorithm.digest(password, salt, HASH_LEN);
    if hash.is_empty() {
        return Err(HashPasswordError::Argon2);
    }
    Ok(format!(
        "$argon2id$v=19$m={ARGON2ID_M_COST},t={ARGON2ID_T_COST},p={ARGON2ID_P_COST}${}${}",
        BASE64_NO_PAD.encode(salt),
        BASE64_NO_PAD.encode(hash)
    ))
}

fn random_salt<const N: usize>() -> Result<[u8; N], HashPasswordError> {
    let mut salt = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut salt))
        .map_err(HashPasswordError::Random)?;
    Ok(salt)
}

/// [`hash_password_pbkdf2`] with a caller-chosen salt, so that tests can reproduce known output. Do not
/// reuse salts for real entries.
pub fn hash_password_pbkdf2_with_salt(
    password: &[u8],
    iterations: u32,
    salt: &[u8; SALT_LEN],
) -> Result<String, HashPasswordError> {
    validate_new_password(password, iterations)?;
    let hash = HashAlgorithm::Pbkdf2Sha512 { iterations }.digest(password, salt, HASH_LEN);
    Ok(format!(
        "$7${iterations}${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    ))
}

fn validate_new_password(password: &[u8], iterations: u32) -> Result<(), HashPasswordError> {
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(HashPasswordError::Iterations(iterations));
    }
    if password.contains(&0) {
        return Err(HashPasswordError::ContainsNul);
    }
    Ok(())
}

/// A hash field that decoded.
struct DecodedHash {
    algorithm: HashAlgorithm,
    salt: Vec<u8>,
    hash: Vec<u8>,
    /// The iteration field as written, when it overflowed a C `int` and was wrapped.
    wrapped_iterations: Option<String>,
}

/// `unpwd__decode_passwords` for one entry, failing with the reason Mosquitto would log.
fn decode_hash(field: &[u8]) -> Result<DecodedHash, EntryError> {
    if field.starts_with(b"$argon2id$") {
        return decode_argon2id(field);
    }
    let mut tokens = c_tokens(field, b'$');
    let algorithm_token = tokens.next().ok_or(EntryError::InvalidHash)?;
    let mut wrapped_iterations = None;
    let algorithm = match algorithm_token {
        b"6" => HashAlgorithm::Sha512,
        b"7" => {
            let token = tokens.next().ok_or(EntryError::InvalidHash)?;
            let (iterations, wrapped) = c_atoi(token);
            let iterations = u32::try_from(iterations)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or(EntryError::InvalidIterations)?;
            if wrapped {
                wrapped_iterations = Some(String::from_utf8_lossy(token).into_owned());
            }
            HashAlgorithm::Pbkdf2Sha512 { iterations }
        }
        _ => return Err(EntryError::InvalidHashType),
    };
    let salt_token = tokens.next().ok_or(EntryError::InvalidHash)?;
    let salt = decode_exact::<SALT_LEN>(salt_token).ok_or(EntryError::InvalidSalt)?;
    let hash_token = tokens.next().ok_or(EntryError::InvalidHash)?;
    let hash = decode_exact::<HASH_LEN>(hash_token).ok_or(EntryError::InvalidDigest)?;
    Ok(DecodedHash {
        algorithm,
        salt: salt.to_vec(),
        hash: hash.to_vec(),
        wrapped_iterations,
    })
}

/// A `$argon2id$v=19$m=M,t=T,p=P$salt$hash` PHC string as libargon2 writes it (parameters in that
/// order, unpadded base64). Parameters Argon2 refuses make the entry invalid, as in Mosquitto 2.1.
fn decode_argon2id(field: &[u8]) -> Result<DecodedHash, EntryError> {
    let text = std::str::from_utf8(field).map_err(|_| EntryError::InvalidHash)?;
    let parts: Vec<&str> = text.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, hash] = parts[..] else {
        return Err(EntryError::InvalidHash);
    };
    let mut values = params.split(',').map(|p| p.split_once('='));
    let mut param = |name: &str| match values.next() {
        Some(Some((key, value))) if key == name => value.parse::<u32>().ok(),
        _ => None,
    };
    let (Some(m_cost), Some(t_cost), Some(p_cost)) = (param("m"), param("t"), param("p")) else {
        return Err(EntryError::InvalidHash);
    };
    let salt = BASE64_NO_PAD
        .decode(salt)
        .map_err(|_| EntryError::InvalidSalt)?;
    let hash = BASE64_NO_PAD
        .decode(hash)
        .map_err(|_| EntryError::InvalidDigest)?;
    // The memory is allocated per check and an allocation failure aborts the process, so an entry
    // asking for more than MAX_ARGON2_M_COST is refused when the file loads instead.
    if m_cost > MAX_ARGON2_M_COST
        || argon2::Params::new(m_cost, t_cost, p_cost, Some(hash.len())).is_err()
        || salt.len() < argon2::MIN_SALT_LEN
    {
        return Err(EntryError::InvalidHash);
    }
    Ok(DecodedHash {
        algorithm: HashAlgorithm::Argon2id {
            m_cost,
            t_cost,
            p_cost,
        },
        salt,
        hash,
        wrapped_iterations: None,
    })
}

fn decode_exact<const N: usize>(token: &[u8]) -> Option<[u8; N]> {
    BASE64.decode(token).ok()?.try_into().ok()
}

/// The tokens `strtok(s, delim)` returns: runs of bytes between delimiters, empty runs skipped.
fn c_tokens(s: &[u8], delim: u8) -> impl Iterator<Item = &[u8]> {
    s.split(move |&b| b == delim).filter(|t| !t.is_empty())
}

/// C `isspace` in the "C" locale; unlike `u8::is_ascii_whitespace` it includes vertical tab.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `misc__trimblanks`: strips C blanks from both ends.
fn trim_blanks(s: &[u8]) -> &[u8] {
    let mut s = trim_start_blanks(s);
    while let [rest @ .., last] = s {
        if !is_c_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// C `atoi` as 64-bit glibc implements it, `(int) strtol(s, NULL, 10)`: leading blanks, an optional
/// sign, then digits up to the first non-digit; `strtol` saturates at the `long` range and the cast
/// keeps the low 32 bits. Also says whether that cast changed the value.
fn c_atoi(s: &[u8]) -> (i32, bool) {
    let (negative, rest) = match trim_start_blanks(s) {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    // Accumulate towards the sign so that i64::MIN itself is representable, saturating like strtol.
    let mut value: i64 = 0;
    for &b in rest.iter().take_while(|b| b.is_ascii_digit()) {
        let digit = i64::from(b - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(digit)
        } else {
            value.saturating_mul(10).saturating_add(digit)
        };
    }
    let truncated = value as i32;
    (truncated, i64::from(truncated) != value)
}

fn trim_start_blanks(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_c_space(*first) {
            break;
        }
        s = rest;
    }
    s
}

/// Compares two digests in time independent of where they differ (`mosquitto__memcmp_const`), so a
/// client timing its refusals cannot learn the stored hash byte by byte. Lengths are not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests;
