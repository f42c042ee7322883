//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the enhanced authentication method built in, against the
//! `scram_file`.
//!
//! The file holds, per user, what RFC 5802 §3 lets a server keep instead of the password:
//!
//! ```text
//! username:SCRAM-SHA-256:<salt, base64>:<iterations>:<StoredKey, base64>:<ServerKey, base64>
//! ```
//!
//! made by `shardmq passwd -S` ([`make_entry`]). PBKDF2 runs only there and on the client: checking a
//! login costs the server two HMAC-SHA-256 and one SHA-256 (microseconds), which is why the exchange
//! runs on the shard's thread (see the contract in `super::method`).
//!
//! The exchange over MQTT 5.0 AUTH: CONNECT carries client-first-message, AUTH 0x18 from the server
//! carries server-first-message, AUTH 0x18 from the client carries client-final-message, and the
//! CONNACK (AUTH 0x00 for a re-authentication) carries server-final-message, with which the client
//! checks the server in turn.
//!
//! Not supported: channel binding (`p=` in the GS2 header: the client is told nothing better than
//! "not authorised"; clients only use it when the mechanism name ends in `-PLUS`, which is not
//! offered), an authorisation identity (`a=`), and SASLprep: usernames and passwords are compared as
//! their UTF-8 bytes, which is what SASLprep leaves of ASCII credentials.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::method::{AuthFailure, AuthMethod, Exchange, Step};

/// The Authentication Method name (RFC 7677).
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PBKDF2 rounds `passwd -S` uses unless told otherwise: RFC 7677 §4's minimum.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt bytes `passwd -S` draws.
pub const SALT_LEN: usize = 16;

/// SHA-256 output, the size of every key.
const KEY_LEN: usize = 32;

/// Random bytes of the server's part of the nonce (base64: 24 printable characters).
const NONCE_LEN: usize = 18;

type HmacSha256 = Hmac<Sha256>;

/// One user's credentials (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; KEY_LEN],
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Credential {
    // The keys let anyone who has them impersonate the server (ServerKey): never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Derive the credentials of `password` (PBKDF2-HMAC-SHA-256, `iterations` rounds). Costly by
    /// design: never on a shard's thread.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Credential {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// Why a `scram_file` could not be loaded: the broker does not start (or a SIGHUP keeps the old one).
#[derive(Debug, thiserror::Error)]
pub enum ScramFileError {
    #[error("cannot read scram_file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("scram_file {}, line {line}: {error}", path.display())]
    Entry {
        path: PathBuf,
        line: usize,
        error: EntryError,
    },
}

/// What is wrong with one line of a `scram_file`. A malformed line refuses the whole file rather than
/// being skipped: a user silently missing would fail to log in with no hint why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("expected username:SCRAM-SHA-256:salt:iterations:stored_key:server_key")]
    Fields,
    #[error("empty username")]
    EmptyUsername,
    #[error("unknown mechanism {0:?} (only SCRAM-SHA-256)")]
    Mechanism(String),
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("iteration count is not a number in 1..=2147483647")]
    Iterations,
    #[error("{0} is not {KEY_LEN} bytes")]
    KeyLength(&'static str),
    #[error("empty salt")]
    EmptySalt,
    #[error("user {0:?} appears twice")]
    Duplicate(String),
}

/// A loaded `scram_file`.
#[derive(Default)]
pub struct ScramFile {
    users: HashMap<String, Credential>,
}

impl std::fmt::Debug for ScramFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramFile({} users)", self.users.len())
    }
}

impl ScramFile {
    pub fn load(path: &Path) -> Result<ScramFile, ScramFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScramFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, error)| ScramFileError::Entry {
            path: path.to_owned(),
            line,
            error,
        })
    }

    /// Parse the file's text; `Err` names the first bad line (1-based). Blank lines and lines starting
    /// with `#` are skipped, as in the other Mosquitto files.
    pub fn parse(text: &str) -> Result<ScramFile, (usize, EntryError)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, credential) = parse_entry(line).map_err(|e| (i + 1, e))?;
            if users.contains_key(&user) {
                return Err((i + 1, EntryError::Duplicate(user)));
            }
            users.insert(user, credential);
        }
        Ok(ScramFile { users })
    }

    pub fn get(&self, username: &str) -> Option<&Credential> {
        self.users.get(username)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn parse_entry(line: &str) -> Result<(String, Credential), EntryError> {
    let fields: Vec<&str> = line.split(':').collect();
    let [user, mechanism, salt, iterations, stored, server] = fields[..] else {
        return Err(EntryError::Fields);
    };
    if user.is_empty() {
        return Err(EntryError::EmptyUsername);
    }
    if mechanism != MECHANISM {
        return Err(EntryError::Mechanism(mechanism.to_owned()));
    }
    let salt = BASE64
        .decode(salt)
        .map_err(|_| EntryError::Base64("salt"))?;
    if salt.is_empty() {
        return Err(EntryError::EmptySalt);
    }
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|n| (1..=i32::MAX as u32).contains(n))
        .ok_or(EntryError::Iterations)?;
    let key = |text: &str, name: &'static str| -> Result<[u8; KEY_LEN], EntryError> {
        BASE64
            .decode(text)
            .map_err(|_| EntryError::Base64(name))?
            .try_into()
            .map_err(|_| EntryError::KeyLength(name))
    };
    Ok((
        user.to_owned(),
        Credential {
            salt,
            iterations,
            stored_key: key(stored, "stored_key")?,
            server_key: key(server, "server_key")?,
        },
    ))
}

/// Why [`make_entry`] could not make an entry.
#[derive(Debug, thiserror::Error)]
pub enum MakeEntryError {
    #[error("a SCRAM username may not be empty or contain ':'")]
    Username,
    #[error("iteration count {0} is outside 1..=2147483647")]
    Iterations(u32),
    #[error("unable to read a random salt: {0}")]
    Random(#[source] io::Error),
}

/// A `scram_file` line for `username` and `password`, with a fresh salt (what `passwd -S` writes).
pub fn make_entry(
    username: &str,
    password: &[u8],
    iterations: u32,
) -> Result<String, MakeEntryError> {
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt).map_err(MakeEntryError::Random)?;
    make_entry_with_salt(username, password, iterations, &salt)
}

/// [`make_entry`] with a caller-chosen salt, for tests. Do not reuse salts for real entries.
pub fn make_entry_with_salt(
    username: &str,
    password: &[u8],
    iterations: u32,
    salt: &[u8],
) -> Result<String, MakeEntryError> {
    if username.is_empty() || username.contains(':') {
        return Err(MakeEntryError::Username);
    }
    Ok(format!(
        "{username}:{}",
        make_field_with_salt(password, iterations, salt)?
    ))
}

/// What follows `username:` in an entry, with a fresh salt (`passwd -S` puts the username in front).
pub fn make_field(password: &[u8], iterations: u32) -> Result<String, MakeEntryError> {
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt).map_err(MakeEntryError::Random)?;
    make_field_with_salt(password, iterations, &salt)
}

fn make_field_with_salt(
    password: &[u8],
    iterations: u32,
    salt: &[u8],
) -> Result<String, MakeEntryError> {
    if !(1..=i32::MAX as u32).contains(&iterations) {
        return Err(MakeEntryError::Iterations(iterations));
    }
    let c = Credential::derive(password, salt, iterations);
    Ok(format!(
        "{MECHANISM}:{}:{iterations}:{}:{}",
        BASE64.encode(&c.salt),
        BASE64.encode(c.stored_key),
        BASE64.encode(c.server_key)
    ))
}

/// SCRAM-SHA-256 as an [`AuthMethod`], over a loaded [`ScramFile`].
#[derive(Debug)]
pub struct ScramSha256 {
    file: Arc<ScramFile>,
}

impl ScramSha256 {
    pub fn new(file: ScramFile) -> ScramSha256 {
        ScramSha256 {
            file: Arc::new(file),
        }
    }
}

impl AuthMethod for ScramSha256 {
    fn name(&self) -> &str {
        MECHANISM
    }

    fn start(&self) -> Box<dyn Exchange> {
        Box::new(ScramExchange {
            file: self.file.clone(),
            state: State::First,
            nonce: None,
        })
    }

    fn knows(&self, username: &str) -> bool {
        self.file.get(username).is_some()
    }
}

/// The server side of one exchange.
pub struct ScramExchange {
    file: Arc<ScramFile>,
    state: State,
    /// The server's nonce part, fixed by tests (RFC 7677's example); drawn at random otherwise.
    nonce: Option<String>,
}

enum State {
    /// Waiting for client-first-message.
    First,
    /// server-first-message sent; waiting for client-final-message.
    Final(Box<Pending>),
    /// Succeeded or failed: nothing more is accepted.
    Done,
}

/// What the final step checks against.
struct Pending {
    username: String,
    /// Whether the user is in the file (else `credential` is a decoy).
    known: bool,
    credential: Credential,
    /// The GS2 header the client sent, which `c=` must repeat.
    gs2_header: String,
    /// client-first-message-bare "," server-first-message, the start of the AuthMessage.
    messages: String,
    /// Client nonce and server nonce, which `r=` must repeat.
    nonce: String,
}

impl ScramExchange {
    /// An exchange whose server nonce is `nonce` instead of a random one (RFC 7677's test vector).
    #[cfg(test)]
    pub(crate) fn with_nonce(file: Arc<ScramFile>, nonce: &str) -> ScramExchange {
        ScramExchange {
            file,
            state: State::First,
            nonce: Some(nonce.to_owned()),
        }
    }

    fn first(&mut self, data: &[u8]) -> Result<Step, AuthFailure> {
        let text = std::str::from_utf8(data).map_err(|_| AuthFailure::Malformed("not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed("no GS2 header"));
        };
        match flag {
            // "y": the client could bind but thinks the server cannot; true, so no downgrade.
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(AuthFailure::Unsupported("channel binding")),
            _ => return Err(AuthFailure::Malformed("GS2 channel binding flag")),
        }
        if !authzid.is_empty() {
            return Err(AuthFailure::Unsupported("authorisation identity"));
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut attrs = bare.split(',');
        let username = match attrs.next() {
            Some(a) if a.starts_with("m=") => {
                return Err(AuthFailure::Unsupported("mandatory extension"))
            }
            Some(a) => decode_saslname(a.strip_prefix("n=").ok_or(AuthFailure::Malformed("n="))?)?,
            None => return Err(AuthFailure::Malformed("n=")),
        };
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or(AuthFailure::Malformed("r="))?;
        let server_nonce = match &self.nonce {
            Some(n) => n.clone(),
            None => {
                let mut raw = [0u8; NONCE_LEN];
                // Without randomness a nonce could repeat, and a recorded exchange replay.
                random_bytes(&mut raw).map_err(|_| AuthFailure::Unsupported("no randomness"))?;
                BASE64.encode(raw)
            }
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let (known, credential) = match self.file.get(&username) {
            Some(c) => (true, c.clone()),
            None => (false, decoy(&username)),
        };
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::Final(Box::new(Pending {
            username,
            known,
            credential,
            gs2_header,
            messages: format!("{bare},{server_first}"),
            nonce,
        }));
        Ok(Step::Continue(server_first.into_bytes()))
    }

    fn last(p: &Pending, data: &[u8]) -> Result<Step, AuthFailure> {
        let text = std::str::from_utf8(data).map_err(|_| AuthFailure::Malformed("not UTF-8"))?;
        // client-final-message = client-final-message-without-proof "," proof
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthFailure::Malformed("p="))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(AuthFailure::Malformed("c="))?;
        if BASE64.decode(binding).ok().as_deref() != Some(p.gs2_header.as_bytes()) {
            return Err(AuthFailure::Malformed("c= does not repeat the GS2 header"));
        }
        if attrs.next().and_then(|a| a.strip_prefix("r=")) != Some(p.nonce.as_str()) {
            return Err(AuthFailure::Malformed("r= does not repeat the nonce"));
        }
        let proof: [u8; KEY_LEN] = BASE64
            .decode(proof)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(AuthFailure::Malformed("proof"))?;
        let auth_message = format!("{},{without_proof}", p.messages);
        let signature = hmac(&p.credential.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let stored: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let matches: bool = stored.ct_eq(&p.credential.stored_key).into();
        if !p.known {
            return Err(AuthFailure::UnknownUser);
        }
        if !matches {
            return Err(AuthFailure::WrongProof);
        }
        let server_signature = hmac(&p.credential.server_key, auth_message.as_bytes());
        Ok(Step::Success {
            username: p.username.clone(),
            data: Some(format!("v={}", BASE64.encode(server_signature)).into_bytes()),
        })
    }
}

impl Exchange for ScramExchange {
    fn step(&mut self, data: Option<&[u8]>) -> Step {
        let data = data.unwrap_or_default();
        let result = match std::mem::replace(&mut self.state, State::Done) {
            State::First => self.first(data),
            State::Final(p) => Self::last(&p, data),
            State::Done => Err(AuthFailure::Complete),
        };
        result.unwrap_or_else(Step::Failure)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 5802 saslname: `=2C` is ',' and `=3D` is '='; any other '=' is malformed.
fn decode_saslname(s: &str) -> Result<String, AuthFailure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(AuthFailure::Malformed("username escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(AuthFailure::Malformed("empty username"));
    }
    Ok(out)
}

/// RFC 5802: printable ASCII but ','.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7E).contains(&b) && b != b',')
}

/// Credentials for a user the file does not have, so that the exchange looks the same as for one it
/// has (RFC 5802 §9: a fixed salt per name, not a random one each time, else two attempts would
/// differ): derived from the name and a secret drawn once per process.
fn decoy(username: &str) -> Credential {
    static SECRET: OnceLock<[u8; KEY_LEN]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; KEY_LEN];
        // Without randomness the decoy's salt is still consistent, only guessable; the login fails
        // all the same.
        let _ = random_bytes(&mut s);
        s
    });
    let salt = hmac(secret, format!("salt:{username}").as_bytes());
    Credential {
        salt: salt[..SALT_LEN].to_vec(),
        iterations: DEFAULT_ITERATIONS,
        stored_key: hmac(secret, format!("stored:{username}").as_bytes()),
        server_key: hmac(secret, format!("server:{username}").as_bytes()),
    }
}

/// Fill `buf` from the kernel's CSPRNG (getrandom(2): no file descriptor, and it cannot block once the
/// pool is initialised, which it is long before a broker takes logins).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
