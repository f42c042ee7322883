//! The `listener` line and the options that apply to the listener above them: where they go (an
//! explicit listener, or Mosquitto's implicit default one), the TLS options (`config/tls.rs`), and
//! a listener's own security options under `per_listener_settings true`. Part of the parser
//! (`parser.rs`), which dispatches these keys here.

use std::path::PathBuf;

use super::{CurrentListener, Line, Parser};
use crate::config::{
    Arity, ConfigError, ListenerConfig, ListenerSecurity, TlsVersion, ValueProblem,
};

impl Parser {
    /// The listener that per-listener options apply to now. Giving one to the implicit default listener
    /// makes it exist (as in Mosquitto).
    pub(super) fn current_listener(&mut self) -> &mut ListenerConfig {
        match self.current {
            CurrentListener::Explicit(i) => &mut self.listeners[i],
            CurrentListener::Default => {
                self.default_listener_used = true;
                &mut self.default_listener
            }
        }
    }

    /// The current listener's own security options (`per_listener_settings true`).
    pub(super) fn listener_security(&mut self) -> &mut ListenerSecurity {
        self.current_listener()
            .security
            .get_or_insert_with(ListenerSecurity::default)
    }

    /// A listener's TLS option (`config/tls.rs`).
    pub(super) fn tls_option(
        &mut self,
        line: &Line<'_>,
        key: &str,
        rest: &str,
    ) -> Result<(), ConfigError> {
        let path = |name: &'static str| -> Result<Option<PathBuf>, ConfigError> {
            Ok(Some(PathBuf::from(line.text(name, rest)?)))
        };
        let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
            Ok(Some(line.text(name, rest)?.to_owned()))
        };
        let tls = &mut self.current_listener().tls;
        match key {
            "certfile" => tls.certfile = path("certfile")?,
            "keyfile" => tls.keyfile = path("keyfile")?,
            "cafile" => tls.cafile = path("cafile")?,
            "capath" => tls.capath = path("capath")?,
            "crlfile" => tls.crlfile = path("crlfile")?,
            "require_certificate" => {
                tls.require_certificate = line.bool("require_certificate", rest)?
            }
            "use_identity_as_username" => {
                tls.use_identity_as_username = line.bool("use_identity_as_username", rest)?
            }
            "use_subject_as_username" => {
                tls.use_subject_as_username = line.bool("use_subject_as_username", rest)?
            }
            "tls_version" => {
                let v = line.one("tls_version", rest)?;
                tls.tls_version = Some(TlsVersion::from_name(v).ok_or_else(|| {
                    line.invalid("tls_version", v, ValueProblem::UnknownTlsVersion)
                })?);
            }
            "ciphers" => tls.ciphers = text("ciphers")?,
            "ciphers_tls1.3" => tls.ciphers_tls13 = text("ciphers_tls1.3")?,
            _ => unreachable!("not a TLS option: {key}"),
        }
        Ok(())
    }

    pub(super) fn listener(&mut self, line: &Line<'_>, rest: &str) -> Result<(), ConfigError> {
        let words = line.words(rest);
        let (port, bind) = match words.as_slice() {
            [port] => (*port, None),
            [port, bind] => (*port, Some(*bind)),
            other => return Err(line.arity("listener", Arity::OneOrTwo, other.len())),
        };
        let port: i64 = port
            .parse()
            .map_err(|_| line.invalid("listener", port, ValueProblem::NotAnInteger))?;
        if port == 0 {
            return Err(match bind {
                Some(path) => line.unsupported("listener", Some(&format!("0 {path}"))),
                None => line.invalid("listener", "0", ValueProblem::PortZero),
            });
        }
        if !(1..=65535).contains(&port) {
            return Err(line.invalid(
                "listener",
                &port.to_string(),
                ValueProblem::OutOfRange { min: 1, max: 65535 },
            ));
        }
        self.local_only = false;
        let mut listener = ListenerConfig::any_interface(port as u16);
        listener.bind_address = bind.map(str::to_owned);
        self.listeners.push(listener);
        self.current = CurrentListener::Explicit(self.listeners.len() - 1);
        Ok(())
    }
}
