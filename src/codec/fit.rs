//! A packet the broker sends within the client's Maximum Packet Size (5.0 §3.1.2.11.4): what may be
//! left out is, in the spec's order, and what still does not fit is not sent [MQTT-3.1.2-24].
//!
//! Only packets other than PUBLISH: a PUBLISH too large for its client is discarded whole
//! [MQTT-3.1.2-25] (`session`), never trimmed, since its properties belong to the message.

use super::encoded_len;
use super::packet::{Packet, Properties, ProtocolVersion};

/// The properties of `packet` that [`fit`] may trim.
fn properties_mut(packet: &mut Packet) -> Option<&mut Properties> {
    Some(match packet {
        Packet::ConnAck(p) => &mut p.properties,
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            &mut p.properties
        }
        Packet::SubAck(p) => &mut p.properties,
        Packet::UnsubAck(p) => &mut p.properties,
        Packet::Disconnect(p) => &mut p.properties,
        Packet::Auth(p) => &mut p.properties,
        _ => return None,
    })
}

/// Make `packet` fit in `max` bytes for a v5 client: first without its Reason String, then also
/// without its User Properties [MQTT-3.1.2-24]. Returns whether it fits (if not, it must not be
/// sent). Other versions have no such limit.
pub fn fit(packet: &mut Packet, version: ProtocolVersion, max: Option<usize>) -> bool {
    let Some(max) = max.filter(|_| version == ProtocolVersion::V5) else {
        return true;
    };
    if encoded_len(packet, version) <= max {
        return true;
    }
    let Some(props) = properties_mut(packet) else {
        return false;
    };
    if props.reason_string.take().is_some() && encoded_len(packet, version) <= max {
        return true;
    }
    let Some(props) = properties_mut(packet) else {
        return false;
    };
    if !props.user_properties.is_empty() {
        props.user_properties.clear();
    }
    encoded_len(packet, version) <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ReasonCode, SubAck, Utf8Bytes};

    fn suback() -> Packet {
        Packet::SubAck(SubAck {
            packet_id: 1,
            codes: vec![ReasonCode::Success],
            properties: Properties {
                reason_string: Some(Utf8Bytes::from_static("a long reason")),
                user_properties: vec![(Utf8Bytes::from_static("k"), Utf8Bytes::from_static("v"))],
                ..Properties::default()
            },
        })
    }

    fn props(p: &Packet) -> &Properties {
        match p {
            Packet::SubAck(s) => &s.properties,
            _ => unreachable!(),
        }
    }

    #[test]
    fn reason_string_goes_first_then_user_properties_then_the_packet() {
        let v5 = ProtocolVersion::V5;
        let full = encoded_len(&suback(), v5);
        let mut p = suback();
        assert!(fit(&mut p, v5, Some(full)));
        assert_eq!(props(&p), props(&suback()));
        assert!(fit(&mut p, v5, None));

        let mut p = suback();
        assert!(fit(&mut p, v5, Some(full - 1)));
        assert!(props(&p).reason_string.is_none());
        assert_eq!(props(&p).user_properties.len(), 1);

        let mut p = suback();
        let without_reason = full - (1 + 2 + "a long reason".len());
        assert!(fit(&mut p, v5, Some(without_reason - 1)));
        assert!(props(&p).user_properties.is_empty());

        let mut p = suback();
        assert!(!fit(&mut p, v5, Some(3)));
        // A 3.x client has no Maximum Packet Size.
        assert!(fit(&mut suback(), ProtocolVersion::V311, Some(3)));
    }
}
