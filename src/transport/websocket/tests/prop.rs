//! Property test of the deframer: any framing of a stream (fragment sizes, masks, length forms, pings
//! between frames), fed in any pieces, gives back the stream and the pings.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::*;
use super::{client_frame, LenForm};

/// One client frame of the generated sequence.
#[derive(Debug, Clone)]
struct Plan {
    /// Where the MQTT stream is cut into frames (sizes), and whether each frame ends its message.
    frames: Vec<(usize, bool)>,
    masks: Vec<[u8; 4]>,
    forms: Vec<u8>,
    /// A ping before frame i, with this payload.
    pings: Vec<Option<Vec<u8>>>,
}

fn plan() -> impl Strategy<Value = (Vec<u8>, Plan, Vec<usize>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec((0usize..400, any::<bool>()), 1..20),
        proptest::collection::vec(any::<[u8; 4]>(), 20),
        proptest::collection::vec(0u8..3, 20),
        proptest::collection::vec(
            proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..126)),
            20,
        ),
        proptest::collection::vec(1usize..200, 1..50),
    )
        .prop_map(|(stream, frames, masks, forms, pings, pieces)| {
            (
                stream,
                Plan {
                    frames,
                    masks,
                    forms,
                    pings,
                },
                pieces,
            )
        })
}

proptest! {
    #[test]
    fn any_framing_in_any_pieces_gives_back_the_stream((stream, plan, pieces) in plan()) {
        let mut wire = Vec::new();
        let mut pings = Vec::new();
        let mut rest = &stream[..];
        let mut in_message = false;
        let n = plan.frames.len();
        for (i, &(size, fin)) in plan.frames.iter().enumerate() {
            // The last frame takes what is left and ends its message.
            let (size, fin) = if i + 1 == n { (rest.len(), true) } else { (size.min(rest.len()), fin) };
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            if let Some(p) = &plan.pings[i] {
                wire.extend(client_frame(true, opcode::PING, p, plan.masks[i], LenForm::Minimal));
                pings.push(Event::Ping(Bytes::from(p.clone())));
            }
            let op = if in_message { opcode::CONTINUATION } else { opcode::BINARY };
            let form = [LenForm::Minimal, LenForm::Ext16, LenForm::Ext64][usize::from(plan.forms[i])];
            wire.extend(client_frame(fin, op, chunk, plan.masks[i], form));
            in_message = !fin;
        }
        let mut d = Deframer::new(1 << 16);
        let mut input = BytesMut::new();
        let mut mqtt = BytesMut::new();
        let mut events = Events::new();
        let mut at = 0;
        for &piece in pieces.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + piece).min(wire.len());
            input.extend_from_slice(&wire[at..end]);
            at = end;
            events.extend(d.decode(&mut input, &mut mqtt).expect("valid frames"));
        }
        prop_assert_eq!(&mqtt[..], &stream[..]);
        prop_assert_eq!(events, pings);
        prop_assert!(input.is_empty());
    }
}
