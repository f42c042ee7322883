//! Loading TLS listeners from files the tests make with rcgen, the identity a certificate gives, and
//! the refusals.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

use super::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("shardmq-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// A CA, a server certificate and key, and a client certificate with `subject`, written into `d`.
fn write_pki(d: &Path, subject: &[(DnType, &str)]) -> (TlsOptions, rcgen::Certificate) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    for (t, v) in subject {
        dn.push(t.clone(), *v);
    }
    client.distinguished_name = dn;
    let client = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    std::fs::write(d.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(d.join("server.crt"), server.pem()).unwrap();
    std::fs::write(d.join("server.key"), server_key.serialize_pem()).unwrap();
    let options = TlsOptions {
        certfile: Some(d.join("server.crt")),
        keyfile: Some(d.join("server.key")),
        cafile: Some(d.join("ca.crt")),
        ..TlsOptions::default()
    };
    (options, client)
}

#[test]
fn a_listener_loads_and_certificates_give_their_identity() {
    let d = dir("load");
    let (options, client) = write_pki(
        &d.0,
        &[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "Example, Ltd"),
            (DnType::CommonName, "sensor-7"),
        ],
    );
    let tls = ServerTls::load(&options).expect("loads");
    assert!(!tls.certificate_is_username());
    assert_eq!(
        cert_username(client.der(), CertIdentity::CommonName).as_deref(),
        Some("sensor-7")
    );
    // OpenSSL's RFC 2253 form, as Mosquitto's use_subject_as_username gives it: last RDN first.
    assert_eq!(
        cert_username(client.der(), CertIdentity::Subject).as_deref(),
        Some("CN=sensor-7,O=Example\\, Ltd,C=GB")
    );
    let tls = ServerTls::load(&TlsOptions {
        use_identity_as_username: true,
        require_certificate: true,
        ..options
    })
    .expect("loads");
    assert!(tls.certificate_is_username());
    // A connection that has not been handed a certificate has no identity.
    let conn = tls.accept().expect("a connection");
    assert_eq!(tls.identity(&conn), Some(None));
}

#[test]
fn ciphers_are_named_as_openssl_names_them_and_others_refused() {
    let d = dir("ciphers");
    let (options, _) = write_pki(&d.0, &[(DnType::CommonName, "c")]);
    let only = TlsOptions {
        ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305".into()),
        ciphers_tls13: Some("TLS_AES_128_GCM_SHA256".into()),
        ..options.clone()
    };
    let suites = cipher_suites(&only).unwrap();
    let names: Vec<CipherSuite> = suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        names,
        [
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
    );
    assert!(ServerTls::load(&only).is_ok());
    for (key, list) in [
        ("ciphers", "HIGH:!aNULL"),
        ("ciphers", "AES128-SHA"),
        ("ciphers_tls1.3", "TLS_AES_128_CCM_SHA256"),
    ] {
        let bad = if key == "ciphers" {
            TlsOptions {
                ciphers: Some(list.into()),
                ..options.clone()
            }
        } else {
            TlsOptions {
                ciphers_tls13: Some(list.into()),
                ..options.clone()
            }
        };
        match ServerTls::load(&bad) {
            Err(TlsError::UnknownCipher { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{list}: expected an unknown cipher, got {other:?}"),
        }
    }
}

#[test]
fn missing_or_wrong_files_are_reported_by_name() {
    let d = dir("files");
    let (options, _) = write_pki(&d.0, &[(DnType::CommonName, "c")]);
    let missing = TlsOptions {
        keyfile: Some(d.0.join("nope.key")),
        ..options.clone()
    };
    let e = ServerTls::load(&missing).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Read {
                what: "keyfile",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("nope.key"), "{e}");
    // A certificate file given as the key.
    let swapped = TlsOptions {
        keyfile: options.certfile.clone(),
        ..options.clone()
    };
    assert!(matches!(
        ServerTls::load(&swapped),
        Err(TlsError::Empty {
            what: "keyfile",
            ..
        })
    ));
    // capath: a directory of which only some files hold certificates.
    std::fs::create_dir_all(d.0.join("cas")).unwrap();
    std::fs::copy(d.0.join("ca.crt"), d.0.join("cas/ca.pem")).unwrap();
    std::fs::write(d.0.join("cas/README"), "not a certificate\n").unwrap();
    let capath = TlsOptions {
        cafile: None,
        capath: Some(d.0.join("cas")),
        require_certificate: true,
        ..options.clone()
    };
    assert!(ServerTls::load(&capath).is_ok());
    let empty = TlsOptions {
        capath: Some(d.0.join("nothing")),
        ..capath
    };
    assert!(matches!(
        ServerTls::load(&empty),
        Err(TlsError::Read { what: "capath", .. })
    ));
}
