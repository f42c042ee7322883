//! AUTH on a live connection: re-authentication (MQTT 5.0 §4.12.1). A client that logged in with an
//! enhanced authentication method may prove itself again at any time: AUTH 0x19 (Re-authenticate)
//! naming the same method starts a fresh exchange of that method, continued with AUTH 0x18 both
//! ways, and ended by AUTH 0x00 (Success) from the server. Other packets keep flowing meanwhile.
//!
//! Failure closes the connection with DISCONNECT 0x87 (Not authorized), as [MQTT-4.12.1-2] asks
//! (Mosquitto's plugins get the same), and without the will, as for a client a SIGHUP finds no
//! longer authorised. The exchange must end with the username the client logged in with: a session's
//! ACL is its user's, and a re-authentication is not a way to become someone else.
//!
//! Protocol errors (DISCONNECT 0x82): AUTH from a client that did not use enhanced authentication at
//! CONNECT [MQTT-4.12.0-6] or that names another method [MQTT-4.12.1-1], 0x19 while an exchange is under way, 0x18
//! without one, 0x00 from the client.

use bytes::Bytes;

use super::encode_into;
use crate::codec::{self, Auth, Packet, Properties, ProtocolVersion, ReasonCode, Utf8Bytes};
use crate::logging::log_type;
use crate::session::CloseReason;
use crate::shard::attached::Attached;
use crate::shard::Shard;

use crate::auth::method::{AuthFailure, Step};

impl Shard {
    /// An AUTH from an attached (v5) client.
    pub(super) fn client_auth(&mut self, a: &mut Attached, auth: Auth) -> Result<(), CloseReason> {
        let protocol_error = Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
        let session = self
            .sessions
            .get(a.slot, a.generation)
            .expect("checked by caller");
        let max = session.max_packet_size();
        let login = session.login.as_deref();
        let Some((method, username)) =
            login.and_then(|l| Some((l.method.clone()?, l.username.clone())))
        else {
            tracing::info!(target: log_type::NOTICE,
                "Client {} sent AUTH without enhanced authentication at CONNECT.", a.client_id);
            return protocol_error;
        };
        if auth.properties.authentication_method.as_ref() != Some(&method) {
            tracing::info!(target: log_type::NOTICE,
                "Client {} sent AUTH for another authentication method.", a.client_id);
            return protocol_error;
        }
        match (auth.reason, a.reauth.is_some()) {
            (ReasonCode::ReAuthenticate, false) => {
                // Present as long as the method's file is configured (it is not reloaded away).
                let Some(m) = self.security.auth_method(method.as_str()) else {
                    return self.reauth_failed(
                        a,
                        &method,
                        &AuthFailure::Unsupported("method gone"),
                    );
                };
                a.reauth = Some(Box::new(m.start()));
            }
            (ReasonCode::ContinueAuthentication, true) => {}
            _ => {
                tracing::info!(target: log_type::NOTICE,
                    "Client {} sent AUTH {:?} out of sequence.", a.client_id, auth.reason);
                return protocol_error;
            }
        }
        let exchange = a.reauth.as_mut().expect("started above or before");
        match exchange.step(auth.properties.authentication_data.as_deref()) {
            Step::Continue(data) => {
                send_auth(
                    a,
                    max,
                    ReasonCode::ContinueAuthentication,
                    &method,
                    Some(data),
                );
                Ok(())
            }
            Step::Success {
                username: who,
                data,
            } => {
                a.reauth = None;
                if who != username.as_str() {
                    return self.reauth_failed(
                        a,
                        &method,
                        &AuthFailure::Unsupported("another user"),
                    );
                }
                tracing::debug!(target: log_type::DEBUG,
                    "Client {} re-authenticated as {who} with {method}.", a.client_id);
                send_auth(a, max, ReasonCode::Success, &method, data);
                Ok(())
            }
            Step::Failure(why) => {
                a.reauth = None;
                self.reauth_failed(a, &method, &why)
            }
        }
    }

    /// Tell the client (DISCONNECT 0x87) and close; the log says why, the client is not told.
    fn reauth_failed(
        &mut self,
        a: &Attached,
        method: &Utf8Bytes,
        why: &AuthFailure,
    ) -> Result<(), CloseReason> {
        tracing::info!(target: log_type::NOTICE,
            "Client {} failed re-authentication ({method}: {why}).", a.client_id);
        a.outbox.write(|out| {
            codec::encode_disconnect(ReasonCode::NotAuthorized, ProtocolVersion::V5, out)
        });
        Err(CloseReason::NotAuthorised)
    }
}

/// AUTH to the client of `a`, within its Maximum Packet Size `max`.
fn send_auth(
    a: &Attached,
    max: Option<usize>,
    reason: ReasonCode,
    method: &Utf8Bytes,
    data: Option<Vec<u8>>,
) {
    let packet = Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.clone()),
            authentication_data: data.map(Bytes::from),
            ..Properties::default()
        },
    });
    a.outbox
        .write(|out| encode_into(out, packet, ProtocolVersion::V5, max));
}
