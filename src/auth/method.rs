//! Enhanced authentication (MQTT 5.0 §4.12): the extension point. A CONNECT that carries an
//! Authentication Method picks one [`AuthMethod`] by name; the method's [`Exchange`] is then fed the
//! Authentication Data of the CONNECT and of each AUTH the client sends, and answers each with a
//! [`Step`]: another challenge (AUTH 0x18), success (CONNACK 0x00, or AUTH 0x00 after a
//! re-authentication) or failure (CONNACK 0x87, or DISCONNECT 0x87).
//!
//! The MQTT side (which packets may carry what, the reason codes, the time limit) is the broker's
//! (`shard::enhanced_auth` at CONNECT, `shard::packets::auth` for re-authentication); a method only
//! sees the opaque data, so adding one means implementing these two traits and registering it in
//! [`AuthMethods`].
//!
//! Contract: [`Exchange::step`] runs on the shard's thread, between its other clients' packets, so
//! it must be cheap (microseconds) and never block. A method that needs slow work per login must do
//! it elsewhere; SCRAM (`super::scram`) needs none on the server because its file stores the keys
//! PBKDF2 derived when the entry was made, not the password.

use std::fmt;
use std::sync::Arc;

/// One authentication method, shared read-only by every shard.
pub trait AuthMethod: Send + Sync + fmt::Debug {
    /// The Authentication Method property value that selects it (e.g. `SCRAM-SHA-256`).
    fn name(&self) -> &str;

    /// A fresh exchange, for a CONNECT or for a re-authentication.
    fn start(&self) -> Box<dyn Exchange>;

    /// Whether `username` may still authenticate with this method (a SIGHUP re-reads the method's
    /// files: a user removed from them is disconnected, as a password login is).
    fn knows(&self, username: &str) -> bool;
}

/// One exchange in progress, owned by the connection it authenticates.
pub trait Exchange {
    /// The client's next Authentication Data (`None` when the packet had none).
    fn step(&mut self, data: Option<&[u8]>) -> Step;
}

/// What an exchange answers to the client's data.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this Authentication Data in an AUTH 0x18 (Continue authentication) and wait for the
    /// client's AUTH 0x18.
    Continue(Vec<u8>),
    /// Authenticated as `username`. `data` goes in the CONNACK (or in the AUTH 0x00 that ends a
    /// re-authentication), so that the client can check the server in turn.
    Success {
        username: String,
        data: Option<Vec<u8>>,
    },
    /// Not authenticated; the reason is logged, never sent (it would tell an attacker which part
    /// was wrong).
    Failure(AuthFailure),
}

/// Why an exchange failed. Every failure is "not authorised" on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The client's data does not follow the method's syntax.
    #[error("malformed authentication data: {0}")]
    Malformed(&'static str),
    /// The client asked for something the method does not offer (channel binding, say).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The username is not in the method's credentials (logged only; the exchange ran as for a
    /// known user so that the client could not tell).
    #[error("unknown user")]
    UnknownUser,
    /// The proof of the password was wrong.
    #[error("wrong proof")]
    WrongProof,
    /// Data came after the exchange had ended.
    #[error("exchange already complete")]
    Complete,
}

/// The methods configured, looked up by the CONNECT's Authentication Method. Few (one today): a
/// linear search is the fastest lookup.
#[derive(Debug, Default, Clone)]
pub struct AuthMethods {
    methods: Vec<Arc<dyn AuthMethod>>,
}

impl AuthMethods {
    /// Add a method; one registered under the same name before is replaced.
    pub fn register(&mut self, method: Arc<dyn AuthMethod>) {
        self.methods.retain(|m| m.name() != method.name());
        self.methods.push(method);
    }

    /// The method named `name` (compared exactly: method names are case-sensitive, §3.1.2.11.9).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AuthMethod>> {
        self.methods.iter().find(|m| m.name() == name)
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }
}
