//! TLS listeners: a listener's [`TlsOptions`] turned into a rustls server configuration
//! ([`ServerTls::load`]), and the username a client certificate stands for
//! (`use_identity_as_username`, `use_subject_as_username`: [`ServerTls::identity`]).
//!
//! rustls is itself sans-IO: a `rustls::ServerConnection` takes the bytes read from the socket and
//! gives the bytes to write. The connection tasks (`shard/socket.rs`) move bytes between it and the
//! socket; nothing here touches one. Loaded at start-up and again on SIGHUP (`crate::server::
//! load_security`): every file is read then, so a missing or malformed one is reported at once, and a
//! connection uses the [`ServerTls`] in force when it was accepted.
//!
//! What rustls cannot do is refused with a clear error rather than quietly weakened: TLS 1.1 and older
//! (`tls_version`, refused by the config parser), cipher suites it does not implement and OpenSSL's
//! cipher-list keywords (`ciphers`).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::config::{TlsOptions, TlsVersion};

/// Why a listener's TLS configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file without what it should hold.
    #[error("{what} {} holds no {expected} in PEM form", path.display())]
    Empty {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        expected: &'static str,
    },
    /// A CA certificate rustls refuses as a trust anchor.
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// `ciphers`/`ciphers_tls1.3` names a suite rustls does not implement, or an OpenSSL keyword.
    #[error(
        "{key}: {name} is not a cipher suite shardmq offers (rustls implements {known}; OpenSSL \
         keywords such as HIGH or !aNULL are not understood)"
    )]
    UnknownCipher {
        /// `ciphers` or `ciphers_tls1.3`.
        key: &'static str,
        /// The name as written.
        name: String,
        /// The names that would do.
        known: String,
    },
    /// The client-certificate verifier could not be built (a CRL rustls cannot parse).
    #[error("client certificate checks: {0}")]
    Verifier(String),
    /// rustls refused the combination (a key that does not match the certificate, no suite left for
    /// the versions allowed, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// Which username a client certificate gives (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertIdentity {
    /// The username is the client's own (or none).
    None,
    /// `use_identity_as_username`: the certificate's Common Name.
    CommonName,
    /// `use_subject_as_username`: the certificate's subject, RFC 2253.
    Subject,
}

/// One TLS listener's loaded configuration.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    identity: CertIdentity,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// TLS 1.2 suites by their OpenSSL names, as `ciphers` lists them.
const TLS12_NAMES: [(&str, CipherSuite); 6] = [
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites by their IANA names (OpenSSL uses them too), as `ciphers_tls1.3` lists them.
const TLS13_NAMES: [(&str, CipherSuite); 3] = [
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

impl ServerTls {
    /// Read the listener's files and build its configuration.
    pub fn load(options: &TlsOptions) -> Result<ServerTls, TlsError> {
        let certfile = options.certfile.as_deref().unwrap_or(Path::new(""));
        let keyfile = options.keyfile.as_deref().unwrap_or(Path::new(""));
        let certs = read_certs("certfile", certfile)?;
        let key = read_key(keyfile)?;
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: cipher_suites(options)?,
            ..provider::default_provider()
        });
        let versions: &[&rustls::SupportedProtocolVersion] = match options.tls_version {
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
            Some(TlsVersion::Tls12) | None => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        // As Mosquitto (OpenSSL's SSL_VERIFY_NONE): without require_certificate no client certificate is
        // asked for, so one from an unknown CA does not fail a handshake Mosquitto would let through.
        let roots = roots(options)?.filter(|_| options.require_certificate);
        let verifier = match roots {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(roots) => {
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if let Some(path) = &options.crlfile {
                    // As OpenSSL's CRL check in Mosquitto: the client's own certificate is looked up.
                    builder = builder
                        .with_crls(read_crls(path)?)
                        .only_check_end_entity_revocation();
                }
                builder
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?
            }
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        let identity = if options.use_identity_as_username {
            CertIdentity::CommonName
        } else if options.use_subject_as_username {
            CertIdentity::Subject
        } else {
            CertIdentity::None
        };
        Ok(ServerTls {
            config: Arc::new(config),
            identity,
        })
    }

    /// A new server side of a TLS connection, for one accepted socket.
    pub fn accept(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(self.config.clone())
    }

    /// Whether a client's certificate gives its username (and no password is checked).
    pub fn certificate_is_username(&self) -> bool {
        self.identity != CertIdentity::None
    }

    /// The username the client's certificate gives on this listener: `None` when the listener does not
    /// take usernames from certificates, `Some(None)` when it does but the client presented no
    /// certificate (or one without a Common Name), which is then refused.
    pub fn identity(&self, conn: &rustls::ServerConnection) -> Option<Option<String>> {
        if self.identity == CertIdentity::None {
            return None;
        }
        let cert = conn.peer_certificates().and_then(|c| c.first());
        Some(cert.and_then(|cert| cert_username(cert, self.identity)))
    }
}

/// The username `cert` gives under `identity` (see [`ServerTls::identity`]).
pub fn cert_username(cert: &CertificateDer<'_>, identity: CertIdentity) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = cert.subject();
    match identity {
        CertIdentity::None => None,
        CertIdentity::CommonName => subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        CertIdentity::Subject => Some(rfc2253(subject)),
    }
}

/// A subject as OpenSSL prints it with `XN_FLAG_RFC2253` (what Mosquitto's use_subject_as_username
/// gives): last RDN first, `,` between RDNs, `+` within one, short attribute names where OpenSSL has
/// them, the dotted OID otherwise, special characters escaped with `\`.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type();
            match registry.get(oid) {
                Some(entry) => out.push_str(short_name(entry.sn())),
                None => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_rfc2253(value, &mut out),
                // Not a string type: the DER value in hex, as RFC 2253 writes it.
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            }
        }
    }
    out
}

/// OpenSSL's short names where x509-parser's registry spells them otherwise.
fn short_name(sn: &str) -> &str {
    match sn {
        "commonName" => "CN",
        "countryName" => "C",
        "localityName" => "L",
        "stateOrProvinceName" => "ST",
        "organizationName" => "O",
        "organizationalUnitName" => "OU",
        "streetAddress" => "street",
        "domainComponent" => "DC",
        "userId" => "UID",
        other => other,
    }
}

fn escape_rfc2253(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<BufReader<std::fs::File>, TlsError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut read_pem(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut read_pem("keyfile", path)?)
        .map_err(|source| TlsError::Read {
            what: "keyfile",
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            what: "keyfile",
            path: path.to_owned(),
            expected: "private key",
        })
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = rustls_pemfile::crls(&mut read_pem("crlfile", path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            what: "crlfile",
            path: path.to_owned(),
            source,
        })?;
    if crls.is_empty() {
        return Err(TlsError::Empty {
            what: "crlfile",
            path: path.to_owned(),
            expected: "certificate revocation list",
        });
    }
    Ok(crls)
}

/// The CAs of `cafile` and every file of `capath` (which may also hold other files, as
/// /etc/ssl/certs does: those without a certificate are skipped); `None` without either.
fn roots(options: &TlsOptions) -> Result<Option<RootCertStore>, TlsError> {
    if options.cafile.is_none() && options.capath.is_none() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    let mut add = |path: &Path, certs: Vec<CertificateDer<'static>>| {
        for cert in certs {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok::<(), TlsError>(())
    };
    if let Some(path) = &options.cafile {
        add(path, read_certs("cafile", path)?)?;
    }
    if let Some(dir) = &options.capath {
        let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
            what: "capath",
            path: dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            match read_certs("capath", &path) {
                Ok(certs) => add(&path, certs)?,
                Err(TlsError::Empty { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if roots.is_empty() {
            return Err(TlsError::Empty {
                what: "capath",
                path: dir.clone(),
                expected: "CA certificate",
            });
        }
    }
    Ok(Some(roots))
}

/// The suites offered: every one rustls implements, unless `ciphers` / `ciphers_tls1.3` narrow the
/// TLS 1.2 / TLS 1.3 ones.
fn cipher_suites(options: &TlsOptions) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let all = provider::ALL_CIPHER_SUITES;
    let pick = |key: &'static str,
                list: Option<&str>,
                names: &[(&str, CipherSuite)],
                tls13: bool|
     -> Result<Vec<SupportedCipherSuite>, TlsError> {
        let of_version =
            |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_)) == tls13;
        let Some(list) = list else {
            return Ok(all.iter().copied().filter(of_version).collect());
        };
        let mut chosen = Vec::new();
        for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(&(_, suite)) = names.iter().find(|(n, _)| *n == name) else {
                return Err(TlsError::UnknownCipher {
                    key,
                    name: name.to_owned(),
                    known: names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                });
            };
            if let Some(s) = all.iter().find(|s| s.suite() == suite) {
                if !chosen
                    .iter()
                    .any(|c: &SupportedCipherSuite| c.suite() == suite)
                {
                    chosen.push(*s);
                }
            }
        }
        Ok(chosen)
    };
    let mut suites = pick(
        "ciphers_tls1.3",
        options.ciphers_tls13.as_deref(),
        &TLS13_NAMES,
        true,
    )?;
    suites.extend(pick(
        "ciphers",
        options.ciphers.as_deref(),
        &TLS12_NAMES,
        false,
    )?);
    Ok(suites)
}

#[cfg(test)]
mod tests;
