//! TLS clients (`--tls-ca`, `--tls-cert`/`--tls-key`, `--tls-server-name`): rustls with ring, as the
//! broker uses.
//!
//! The handshake is tokio-rustls's ([`connect`]); the connection then hands its socket and rustls
//! session to [`crate::conn::Conn`], whose readiness-driven loop feeds the session itself ([`TlsIo`]):
//! one socket read of up to 256 KiB decrypted in bulk into the read buffer, the write buffer encrypted
//! and written with vectored writes. Plain TCP connections do not go through any of this.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::net::TcpStream;

/// What every TLS client of the run uses.
#[derive(Debug)]
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    /// `--tls-server-name`; otherwise each broker's host as given (an IP address or a DNS name).
    pub server_name: Option<ServerName<'static>>,
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, what)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path, "--tls-key")?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("--tls-key {}: {e}", path.display()))?
        .ok_or_else(|| format!("--tls-key {}: no PEM private key in it", path.display()))
}

impl TlsSetup {
    /// The client configuration of `--tls-ca` (every certificate in it is trusted), the client
    /// certificate and key when both are given, and the server name override. Session resumption is
    /// off: every connection makes a full handshake, which is what the connect rate measures.
    pub fn load(
        ca: &Path,
        cert_key: Option<(&Path, &Path)>,
        server_name: Option<&str>,
    ) -> Result<TlsSetup, String> {
        let mut roots = RootCertStore::empty();
        for cert in certs(ca, "--tls-ca")? {
            roots
                .add(cert)
                .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots);
        let mut config = match cert_key {
            Some((cert, key)) => builder
                .with_client_auth_cert(certs(cert, "--tls-cert")?, private_key(key)?)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.resumption = Resumption::disabled();
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|e| format!("--tls-server-name {n:?}: {e}"))
            })
            .transpose()?;
        Ok(TlsSetup {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name the broker at `host` must present a certificate for.
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| format!("TLS server name {host:?}: {e} (use --tls-server-name)")),
        }
    }
}

/// The TLS handshake over a connected socket (tokio-rustls).
pub async fn connect(
    setup: &TlsSetup,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = setup.server_name_for(host)?;
    tokio_rustls::TlsConnector::from(setup.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// A connection's rustls session after the handshake, fed by [`crate::conn::Conn`].
pub struct TlsIo {
    pub session: ClientConnection,
    /// Ciphertext read from the socket, handed to rustls in pieces.
    raw: BytesMut,
}

/// `io::Write` onto a non-blocking tokio socket (`WouldBlock` when full).
struct TryWrite<'a>(&'a TcpStream);

impl io::Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsIo {
    pub fn new(session: ClientConnection, read_chunk: usize) -> TlsIo {
        TlsIo {
            session,
            raw: BytesMut::with_capacity(read_chunk),
        }
    }

    /// Whether encrypted bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// One socket read (up to `read_chunk` bytes), decrypted and appended to `rbuf`. Returns the bytes
    /// read from the socket (0: closed), not the plaintext (a read may bring only TLS records).
    pub fn read(
        &mut self,
        stream: &TcpStream,
        rbuf: &mut BytesMut,
        read_chunk: usize,
    ) -> io::Result<usize> {
        self.raw.clear();
        self.raw.reserve(read_chunk);
        let n = stream.try_read_buf(&mut self.raw)?;
        if n == 0 {
            return Ok(0);
        }
        let mut input: &[u8] = &self.raw;
        while !input.is_empty() {
            // Reads at most a few KiB at a time; the plaintext is drained after each so rustls's
            // buffers never fill up.
            let read = self.session.read_tls(&mut input)?;
            let state = self
                .session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let plain = state.plaintext_bytes_to_read();
            if plain > 0 {
                let start = rbuf.len();
                rbuf.resize(start + plain, 0);
                let got = self.session.reader().read(&mut rbuf[start..])?;
                rbuf.truncate(start + got);
            }
            if state.peer_has_closed() || read == 0 {
                // close_notify: nothing more will be read from this connection.
                return Ok(0);
            }
        }
        Ok(n)
    }

    /// Encrypts what `wbuf` holds (as much as rustls buffers) and writes what the socket takes.
    /// Returns whether anything was written to the socket.
    pub fn flush(&mut self, stream: &TcpStream, wbuf: &mut BytesMut) -> io::Result<bool> {
        use bytes::Buf;
        use io::Write;
        let mut wrote = false;
        loop {
            if !wbuf.is_empty() {
                let n = self.session.writer().write(wbuf)?;
                wbuf.advance(n);
            }
            if !self.session.wants_write() {
                return Ok(wrote);
            }
            match self.session.write_tls(&mut TryWrite(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(wrote),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        let dir = std::env::temp_dir().join(format!("loadgen-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca_path = dir.join("ca.crt");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let t = TlsSetup::load(&ca_path, None, None).unwrap();
        assert!(matches!(
            t.server_name_for("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            t.server_name_for("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        let t = TlsSetup::load(&ca_path, None, Some("broker.example")).unwrap();
        assert_eq!(
            t.server_name_for("127.0.0.1").unwrap(),
            ServerName::try_from("broker.example").unwrap()
        );
        assert!(TlsSetup::load(&ca_path, None, Some("bad name!")).is_err());
        let key_path = dir.join("ca.key");
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        assert!(
            TlsSetup::load(&key_path, None, None).is_err(),
            "a key is no CA"
        );
        assert!(TlsSetup::load(&ca_path, Some((&ca_path, &key_path)), None).is_ok());
        assert!(TlsSetup::load(&ca_path, Some((&ca_path, &ca_path)), None).is_err());
        assert!(TlsSetup::load(&dir.join("missing"), None, None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
