//! Who may connect, publish and receive: Mosquitto 2.0's built-in security (`password_file`,
//! `acl_file`, `allow_anonymous`), so that a Mosquitto deployment's files work unchanged.
//!
//! - [`password`]: the `password_file` written by `mosquitto_passwd`, checked at CONNECT.
//! - [`acl`]: the `acl_file`, checked for each PUBLISH (write), each delivery and retained message
//!   (read) and each will (write).
//! - [`method`]: MQTT 5.0 enhanced authentication's extension point, and [`scram`], the method built
//!   in (SCRAM-SHA-256 against the `scram_file`, shardmq's own option).
//!
//! Both files, and the TLS listeners' certificates, are read at start-up (and again on SIGHUP) into a
//! [`Security`] that every shard shares read-only.

pub mod acl;
pub mod method;
pub mod password;
pub mod scram;

use std::path::Path;
use std::sync::Arc;

use crate::config::TlsOptions;
use crate::transport::tls::ServerTls;

use acl::{AclError, AclFile, ClientAcl};
use method::{AuthMethod, AuthMethods};
use password::{HashAlgorithm, PasswordFile, PasswordFileError};

/// PBKDF2 rounds checked on the shard's own thread: about 0.5 ms at 47 µs per 101 rounds.
pub const INLINE_PBKDF2_ITERATIONS: u32 = 1_000;

/// Why the security files could not be loaded; the broker does not start, as Mosquitto does not.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    #[error(transparent)]
    AclFile(#[from] AclError),
    #[error(transparent)]
    ScramFile(#[from] scram::ScramFileError),
    /// A TLS listener's certificate, key, CA or CRL file (or its options) could not be loaded.
    #[error("listener on port {port}: {source}")]
    Tls {
        /// The listener's port.
        port: u16,
        /// Why.
        source: crate::transport::tls::TlsError,
    },
}

/// What a SIGHUP reads again: the loaded `password_file` and `acl_file`, if configured, and each TLS
/// listener's certificates (`crate::transport::tls`).
#[derive(Default)]
pub struct Security {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    /// By listener index (config order); `None` for a plain listener.
    tls: Vec<Option<Arc<ServerTls>>>,
    /// `per_listener_settings true`: each listener's own password and ACL files, by listener index
    /// (see [`Security::scope`]); empty otherwise.
    per_listener: Vec<Security>,
    /// Whether this or any listener's scope has an `acl_file` (asked for every publish).
    any_acl: bool,
    /// Enhanced authentication methods (`scram_file`); global, never per listener.
    methods: AuthMethods,
}

impl std::fmt::Debug for Security {
    // Never the hashes, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("password_file", &self.passwords.is_some())
            .field("acl_file", &self.acl.is_some())
            .field("methods", &self.methods)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Security {
    /// Read the configured files. Returns the warnings to log (entries skipped, patterns without a
    /// substitution), as Mosquitto logs them while loading.
    pub fn load(
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
    ) -> Result<(Security, Vec<String>), SecurityError> {
        let mut warnings = Vec::new();
        let passwords = match password_file {
            Some(path) => {
                let (file, w) = PasswordFile::load(path)?;
                warnings.extend(
                    w.into_iter()
                        .map(|w| format!("password_file {}, {w}", path.display())),
                );
                Some(file)
            }
            None => None,
        };
        let acl = match acl_file {
            Some(path) => {
                let mut file = AclFile::load(path)?;
                warnings.extend(
                    file.warnings
                        .drain(..)
                        .map(|w| format!("acl_file {}: {w}", path.display())),
                );
                Some(file)
            }
            None => None,
        };
        Ok((Security::new(passwords, acl), warnings))
    }

    /// Built from already parsed files (tests, embedding).
    pub fn new(passwords: Option<PasswordFile>, acl: Option<AclFile>) -> Security {
        Security {
            any_acl: acl.is_some(),
            passwords,
            acl,
            tls: Vec::new(),
            per_listener: Vec::new(),
            methods: AuthMethods::default(),
        }
    }

    /// The enhanced authentication methods offered.
    pub fn with_methods(mut self, methods: AuthMethods) -> Security {
        self.methods = methods;
        self
    }

    /// The enhanced authentication method a CONNECT names, if offered (the same for every listener:
    /// call it on the broker's [`Security`], not on a listener's [`Security::scope`]).
    pub fn auth_method(&self, name: &str) -> Option<&Arc<dyn AuthMethod>> {
        self.methods.get(name)
    }

    /// Whether a client that logged in with enhanced authentication as `username` still may (after a
    /// SIGHUP re-read the method's files).
    pub fn still_known(&self, method: &str, username: &str) -> bool {
        self.methods.get(method).is_some_and(|m| m.knows(username))
    }

    /// Load the TLS configuration of each listener given as (port, options) in config order.
    pub fn with_tls<'a>(
        mut self,
        listeners: impl IntoIterator<Item = (u16, &'a TlsOptions)>,
    ) -> Result<Security, SecurityError> {
        self.tls = listeners
            .into_iter()
            .map(|(port, options)| {
                options
                    .enabled()
                    .then(|| ServerTls::load(options).map(Arc::new))
                    .transpose()
                    .map_err(|source| SecurityError::Tls { port, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// `per_listener_settings true`: each listener's own files, in listener order (a listener without
    /// them has neither: no password file, no ACL).
    pub fn with_per_listener(mut self, scopes: Vec<Security>) -> Security {
        self.any_acl = self.acl.is_some() || scopes.iter().any(|s| s.acl.is_some());
        self.per_listener = scopes;
        self
    }

    /// The password and ACL files that apply to clients of listener `index`: its own under
    /// `per_listener_settings true`, else the global ones (this).
    pub fn scope(&self, index: usize) -> &Security {
        self.per_listener.get(index).unwrap_or(self)
    }

    /// The TLS configuration of listener `index`, if it is a TLS listener.
    pub fn tls(&self, index: usize) -> Option<&Arc<ServerTls>> {
        self.tls.get(index).and_then(Option::as_ref)
    }

    /// Whether a CONNECT with these credentials may go on. Without a password file `allow_anonymous`
    /// decides for every client, username or not; with one, a client without a username needs
    /// `allow_anonymous` and one with a username needs a matching password (Mosquitto's
    /// `mosquitto_unpwd_check`). A zero-length username is no username, as Mosquitto reads it.
    pub fn authenticate(
        &self,
        allow_anonymous: bool,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> bool {
        match (&self.passwords, username.filter(|u| !u.is_empty())) {
            (None, _) | (Some(_), None) => allow_anonymous,
            (Some(file), Some(user)) => file.check(user, password),
        }
    }

    /// Whether checking `username`'s password costs more than a shard should spend inline: a `$7$`
    /// entry with more than [`INLINE_PBKDF2_ITERATIONS`] rounds (`mosquitto_passwd` writes 101, 47 µs
    /// here; a file written with `-I 100000` would take ~45 ms), or any `$argon2id$` entry. The caller then runs
    /// [`Security::authenticate`] on the blocking thread pool, so a login cannot stall the other clients
    /// of the shard (docs/ARCHITECTURE.md, invariant 7).
    pub fn costly_check(&self, username: Option<&str>) -> bool {
        let (Some(file), Some(user)) = (&self.passwords, username.filter(|u| !u.is_empty())) else {
            return false;
        };
        match file.hash_algorithm(user) {
            Some(HashAlgorithm::Pbkdf2Sha512 { iterations }) => {
                iterations > INLINE_PBKDF2_ITERATIONS
            }
            // Memory-hard by design: Mosquitto 2.1's parameters take 46 MiB and tens of milliseconds.
            Some(HashAlgorithm::Argon2id { .. }) => true,
            Some(HashAlgorithm::Sha512) | None => false,
        }
    }

    /// Whether an `acl_file` is in force, for any listener (else only [`acl::reserved_for_write`] limits
    /// publishing, and sessions' ACLs need not be looked at).
    pub fn has_acl_file(&self) -> bool {
        self.any_acl
    }

    /// The ACL of one client, or None when no `acl_file` is configured (then everything is allowed but
    /// the topics [`acl::reserved_for_write`] keeps for the broker).
    pub fn client_acl(&self, client_id: &str, username: Option<&str>) -> Option<Box<ClientAcl>> {
        let username = username.filter(|u| !u.is_empty());
        self.acl
            .as_ref()
            .map(|a| Box::new(a.for_client(client_id, username)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the files hold, loading them and checking against them never panics.
        #[test]
        fn any_file_content_parses_without_panic(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            words in proptest::collection::vec(
                prop::sample::select(vec!["user", "topic", "pattern", "read", "write", "readwrite",
                    "deny", "#", "+", "a/+/b", "%c", "%u", "$SYS/#", " ", "\n", "\t", ":", "$7$", "$6$"]),
                0..40),
            topic in "[a-z/+#$%]{0,12}",
        ) {
            let (passwords, _) = PasswordFile::parse_bytes(&data);
            let _ = passwords.check("user", Some(&data));
            let text: String = words.concat();
            for text in [text.as_str(), &String::from_utf8_lossy(&data)] {
                if let Ok(acl) = AclFile::parse(text) {
                    let client = acl.for_client(&topic, Some(&topic));
                    if crate::topic::validate_topic_name(&topic).is_ok() {
                        let _ = client.allows(&topic, acl::Access::READ);
                        let _ = client.allows(&topic, acl::Access::WRITE);
                    }
                }
            }
        }
    }

    /// mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b FILE alice secret`.
    const ALICE: &str = "alice:$7$101$6Fy9rgrB1Q7zblxB$JrzNwggJB9R7hungMBl6brFD7IaxUJNojsPhrw2bWOtDL2webI/iwT6yRz1/xfgs4Ep+8/Qzq5oG6eVeqZgnAA==\n";

    fn with_passwords() -> Security {
        Security::new(Some(PasswordFile::parse(ALICE).0), None)
    }

    #[test]
    fn without_a_password_file_allow_anonymous_decides_for_everyone() {
        let s = Security::default();
        assert!(s.authenticate(true, Some("anyone"), Some(b"x")));
        assert!(s.authenticate(true, None, None));
        assert!(!s.authenticate(false, Some("alice"), Some(b"secret")));
        assert!(!s.authenticate(false, None, None));
    }

    #[test]
    fn with_a_password_file_usernames_are_checked_and_anonymous_follows_the_setting() {
        let s = with_passwords();
        assert!(s.authenticate(false, Some("alice"), Some(b"secret")));
        assert!(!s.authenticate(true, Some("alice"), Some(b"wrong")));
        assert!(!s.authenticate(true, Some("bob"), Some(b"secret")));
        assert!(s.authenticate(true, None, None));
        assert!(!s.authenticate(false, None, None));
        // Zero-length username: anonymous.
        assert!(s.authenticate(true, Some(""), None));
        assert!(!s.authenticate(false, Some(""), Some(b"secret")));
    }

    #[test]
    fn only_high_iteration_pbkdf2_and_argon2id_entries_are_costly() {
        let slow = password::hash_password_pbkdf2(b"pw", INLINE_PBKDF2_ITERATIONS + 1).unwrap();
        let text = format!("{ALICE}bob:{slow}\ncarol:$6$M5j26XeULRClwY32$hjhlptCdB6XYtJ7uNdc1pcidJuPXHw2SXVRu4ff5kLrrHrpWHNtOYpWcsaD7w8YTQ6yR34XG7qa7KcdwVWAWJg==\n\
            dave:$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc\n");
        let s = Security::new(Some(PasswordFile::parse(&text).0), None);
        assert!(s.costly_check(Some("bob")));
        assert!(s.costly_check(Some("dave")), "argon2id");
        assert!(s.authenticate(false, Some("bob"), Some(b"pw")));
        assert!(!s.costly_check(Some("alice")), "101 rounds: inline");
        assert!(!s.costly_check(Some("carol")), "$6$: inline");
        assert!(!s.costly_check(Some("nobody")));
        assert!(!s.costly_check(None));
        assert!(!Security::default().costly_check(Some("bob")));
    }

    #[test]
    fn client_acl_only_with_an_acl_file_and_empty_usernames_are_anonymous() {
        assert!(with_passwords().client_acl("c", Some("alice")).is_none());
        let acl = AclFile::parse("topic read anon/#\nuser alice\ntopic read alice/#\n").unwrap();
        let s = Security::new(None, Some(acl));
        let anon = s.client_acl("c", Some("")).expect("an ACL");
        assert!(anon.allows("anon/x", acl::Access::READ));
        let alice = s.client_acl("c", Some("alice")).expect("an ACL");
        assert!(alice.allows("alice/x", acl::Access::READ));
        assert!(!alice.allows("anon/x", acl::Access::READ));
    }
}
