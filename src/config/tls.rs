//! A listener's TLS options, as `mosquitto.conf` spells them (`certfile`, `keyfile`, `cafile`,
//! `capath`, `require_certificate`, `use_identity_as_username`, `use_subject_as_username`,
//! `tls_version`, `ciphers`, `ciphers_tls1.3`, `crlfile`): plain data, checked for consistency here.
//! Turning them into a rustls server configuration (reading the files, naming the cipher suites) is
//! `crate::transport::tls`, at start-up and again on SIGHUP, so a bad file is reported then.

use std::path::PathBuf;

/// `tls_version`: the oldest TLS version the listener accepts (Mosquitto's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tlsv1.2`: TLS 1.2 and 1.3.
    Tls12,
    /// `tlsv1.3`: TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    /// The version a `tls_version` value names; `tlsv1.1` and older are not offered by rustls.
    pub fn from_name(name: &str) -> Option<TlsVersion> {
        match name {
            "tlsv1.2" => Some(TlsVersion::Tls12),
            "tlsv1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

/// One listener's TLS options; the listener speaks TLS when `certfile` and `keyfile` are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM server certificate chain (`certfile`).
    pub certfile: Option<PathBuf>,
    /// PEM private key of the certificate (`keyfile`).
    pub keyfile: Option<PathBuf>,
    /// PEM file of CA certificates that client certificates are checked against (`cafile`).
    pub cafile: Option<PathBuf>,
    /// Directory of PEM CA certificates (`capath`), every file in it read.
    pub capath: Option<PathBuf>,
    /// Clients must present a certificate signed by a CA of `cafile`/`capath`; when false none is asked
    /// for (as in Mosquitto), so the CA and CRL options then have no effect.
    pub require_certificate: bool,
    /// The client certificate's Common Name becomes the username; no password is checked.
    pub use_identity_as_username: bool,
    /// The client certificate's whole subject (RFC 2253 form) becomes the username.
    pub use_subject_as_username: bool,
    /// Oldest version accepted; `None` accepts TLS 1.2 and 1.3.
    pub tls_version: Option<TlsVersion>,
    /// TLS 1.2 cipher suites, OpenSSL names separated by `:` (`ciphers`).
    pub ciphers: Option<String>,
    /// TLS 1.3 cipher suites, IANA names separated by `:` (`ciphers_tls1.3`).
    pub ciphers_tls13: Option<String>,
    /// PEM certificate revocation list(s) client certificates are checked against (`crlfile`).
    pub crlfile: Option<PathBuf>,
}

/// Why a listener's TLS options do not make sense together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsOptionsProblem {
    /// One of certfile/keyfile without the other.
    #[error("{present} is set but {missing} is not: a TLS listener needs both")]
    HalfACertificate {
        /// The one that is set.
        present: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// A TLS option on a listener that has no certificate (so it is not a TLS listener).
    #[error("{0} is set but the listener has no certfile/keyfile, so it does not use TLS")]
    WithoutCertificate(&'static str),
    /// Client certificates asked for with no CA to check them against.
    #[error("{0} needs cafile or capath to check client certificates against")]
    WithoutCa(&'static str),
    /// Both ways of turning a certificate into a username.
    #[error("use_identity_as_username and use_subject_as_username cannot both be true")]
    TwoIdentities,
}

impl TlsOptions {
    /// Whether the listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.certfile.is_some() && self.keyfile.is_some()
    }

    /// Whether the options fit together (checked when the configuration is read).
    pub fn check(&self) -> Result<(), TlsOptionsProblem> {
        match (&self.certfile, &self.keyfile) {
            (Some(_), None) => {
                return Err(TlsOptionsProblem::HalfACertificate {
                    present: "certfile",
                    missing: "keyfile",
                })
            }
            (None, Some(_)) => {
                return Err(TlsOptionsProblem::HalfACertificate {
                    present: "keyfile",
                    missing: "certfile",
                })
            }
            _ => {}
        }
        let set: [(&'static str, bool); 9] = [
            ("cafile", self.cafile.is_some()),
            ("capath", self.capath.is_some()),
            ("require_certificate", self.require_certificate),
            ("use_identity_as_username", self.use_identity_as_username),
            ("use_subject_as_username", self.use_subject_as_username),
            ("tls_version", self.tls_version.is_some()),
            ("ciphers", self.ciphers.is_some()),
            ("ciphers_tls1.3", self.ciphers_tls13.is_some()),
            ("crlfile", self.crlfile.is_some()),
        ];
        if !self.enabled() {
            if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
                return Err(TlsOptionsProblem::WithoutCertificate(key));
            }
            return Ok(());
        }
        let has_ca = self.cafile.is_some() || self.capath.is_some();
        for (key, on) in [
            ("require_certificate", self.require_certificate),
            ("use_identity_as_username", self.use_identity_as_username),
            ("use_subject_as_username", self.use_subject_as_username),
            ("crlfile", self.crlfile.is_some()),
        ] {
            if on && !has_ca {
                return Err(TlsOptionsProblem::WithoutCa(key));
            }
        }
        if self.use_identity_as_username && self.use_subject_as_username {
            return Err(TlsOptionsProblem::TwoIdentities);
        }
        Ok(())
    }
}
