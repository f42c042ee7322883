//! MQTT over WebSockets, server side (RFC 6455; MQTT 3.1.1 §6, MQTT 5.0 §6), sans-IO.
//!
//! A WebSocket connection starts as HTTP/1.1: [`parse_upgrade`] reads the client's upgrade request and
//! [`encode_accept`] (or [`encode_refusal`]) writes the answer. From then on the client sends frames,
//! which a [`Deframer`] turns back into the MQTT byte stream the codec decodes, and the broker wraps what
//! it writes in binary frames ([`encode_binary`], or [`encode_binary_header`] before a payload sent by
//! reference).
//!
//! MQTT gives frame boundaries no meaning ([MQTT-6.0.0-2]/[MQTT-6.0.0-3]): a packet may span frames and a
//! frame may hold several packets, so the stream is simply the concatenation of the binary (and
//! continuation) payloads. Text frames are a protocol error ([MQTT-6.0.0-1]). No extension is ever
//! negotiated (permessage-deflate would cost a compressor per connection and MQTT payloads are often
//! already compact), so the RSV bits must always be 0.
//!
//! Concurrency model: none. No sockets, no clocks, no executor; every function works on byte buffers.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

#[cfg(test)]
mod tests;

/// The subprotocols offered, in the broker's order of preference (Mosquitto/libwebsockets accept both):
/// `mqtt` is the one MQTT 3.1.1 and 5.0 register, `mqttv3.1` what MQTT 3.1 clients sent.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Largest HTTP upgrade request accepted (bytes, headers included). Browsers send well under 2 KiB; the
/// cap bounds what a connection may make the broker buffer before it has said anything valid.
pub const MAX_REQUEST: usize = 8 * 1024;

/// RFC 6455 §1.3: appended to the client's key before hashing, so that only a WebSocket server can
/// produce the accept value.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A valid WebSocket upgrade request, as [`parse_upgrade`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request target (`/mqtt`, `/`, ...). Any path is accepted, as Mosquitto does; kept for logs.
    pub path: String,
    /// `Sec-WebSocket-Key` as sent (trimmed); [`encode_accept`] hashes it.
    pub key: String,
    /// The subprotocol chosen from [`SUBPROTOCOLS`]; `None` when the client offered none.
    pub protocol: Option<&'static str>,
    /// The `Host` header, if any (RFC 6455 requires one; not enforced, kept for logs).
    pub host: Option<String>,
    /// The `Origin` header, if any (browsers send one): kept for logs and a future origin policy.
    pub origin: Option<String>,
}

/// Why an upgrade request is refused. Each maps to the HTTP status [`encode_refusal`] answers with
/// ([`HandshakeError::status`]); the connection is closed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// [`MAX_REQUEST`] bytes arrived without the blank line that ends the headers.
    #[error("upgrade request larger than {MAX_REQUEST} bytes")]
    TooLarge,
    /// Not an HTTP/1.x request: bad request line, a header line without a colon, line folding, or a
    /// target that is not UTF-8.
    #[error("malformed HTTP request")]
    Malformed,
    /// RFC 6455 §4.1: the handshake is a GET.
    #[error("method is not GET")]
    NotGet,
    /// RFC 6455 §4.1: the handshake is HTTP/1.1.
    #[error("HTTP version is not 1.1")]
    NotHttp11,
    /// No `Upgrade` header listing `websocket`: a plain HTTP request.
    #[error("not a WebSocket upgrade (no \"Upgrade: websocket\")")]
    NotWebSocket,
    /// No `Connection` header listing `upgrade`.
    #[error("no \"upgrade\" in the Connection header")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13 (answered with 426 and the version spoken).
    #[error("unsupported WebSocket version (13 required)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not the base64 of 16 bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
    /// MQTT 3.1.1/5.0 §6: the client offered subprotocols but not `mqtt` (nor `mqttv3.1`).
    #[error("no MQTT subprotocol offered (expected \"mqtt\")")]
    NoMqttSubprotocol,
}

impl HandshakeError {
    /// The HTTP status and reason phrase of the refusal: 426 for a version mismatch (RFC 6455 §4.4), 400
    /// for everything else. Never 404: any path is accepted.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HandshakeError::UnsupportedVersion => (426, "Upgrade Required"),
            _ => (400, "Bad Request"),
        }
    }
}

/// Parse the client's HTTP/1.1 upgrade request from the start of `buf`. `Ok(None)`: incomplete, read
/// more (`Err(HandshakeError::TooLarge)` once `buf` holds [`MAX_REQUEST`] bytes without the end of the
/// headers). `Ok(Some((upgrade, consumed)))`: `consumed` bytes were the request; anything after it is
/// already WebSocket frames the client pipelined.
///
/// A request whose first bytes cannot begin an HTTP method is refused at once (`Malformed`) rather than
/// after [`MAX_REQUEST`] bytes: a plain MQTT client on the WebSocket port would otherwise wait for a
/// CONNACK until its keep-alive gave up.
pub fn parse_upgrade(buf: &[u8]) -> Result<Option<(Upgrade, usize)>, HandshakeError> {
    let window = &buf[..buf.len().min(MAX_REQUEST)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        let method_so_far = window.split(|&b| b == b' ').next().unwrap_or(&[]);
        if !method_so_far.iter().all(u8::is_ascii_uppercase) {
            return Err(HandshakeError::Malformed);
        }
        return if buf.len() >= MAX_REQUEST {
            Err(HandshakeError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let consumed = end + 4;
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let path = parse_request_line(lines.next().unwrap_or(&[]))?;

    let mut upgrade_ws = false;
    let mut connection_upgrade = false;
    let mut version_ok = None::<bool>;
    let mut key = None::<&[u8]>;
    let mut key_count = 0;
    let mut offered_any = false;
    let mut offered = [false; SUBPROTOCOLS.len()];
    let mut host = None;
    let mut origin = None;
    for line in lines {
        // RFC 7230 §3.2.4: obsolete line folding may be refused with 400.
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(HandshakeError::Malformed);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HandshakeError::Malformed)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
            return Err(HandshakeError::Malformed);
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_ws |= list(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= list(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            // Several lines or a list: acceptable only if every value is 13.
            let all_13 = list(value).all(|t| t == b"13") && list(value).next().is_some();
            version_ok = Some(version_ok.unwrap_or(true) && all_13);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            key = Some(value);
            key_count += 1;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            for token in list(value) {
                offered_any = true;
                if let Some(i) = SUBPROTOCOLS.iter().position(|p| p.as_bytes() == token) {
                    offered[i] = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            host = Some(lossy(value));
        } else if name.eq_ignore_ascii_case(b"origin") {
            origin = Some(lossy(value));
        }
        // Anything else (Sec-WebSocket-Extensions included) is ignored: no extension is accepted.
    }
    if !upgrade_ws {
        return Err(HandshakeError::NotWebSocket);
    }
    if !connection_upgrade {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if version_ok != Some(true) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = match key {
        Some(k) if key_count == 1 && valid_key(k) => lossy(k),
        _ => return Err(HandshakeError::BadKey),
    };
    // Subprotocol tokens are case-sensitive, and a browser fails the connection unless the answer is
    // exactly one of the values it offered.
    let protocol = match SUBPROTOCOLS.iter().zip(offered).find(|(_, o)| *o) {
        Some((p, _)) => Some(*p),
        None if offered_any => return Err(HandshakeError::NoMqttSubprotocol),
        None => None,
    };
    let upgrade = Upgrade {
        path,
        key,
        protocol,
        host,
        origin,
    };
    Ok(Some((upgrade, consumed)))
}

/// `GET <target> HTTP/1.1` → the target.
fn parse_request_line(line: &[u8]) -> Result<String, HandshakeError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HandshakeError::Malformed);
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) || target.is_empty() {
        return Err(HandshakeError::Malformed);
    }
    if !version.starts_with(b"HTTP/") {
        return Err(HandshakeError::Malformed);
    }
    if method != b"GET" {
        return Err(HandshakeError::NotGet);
    }
    if version != b"HTTP/1.1" {
        return Err(HandshakeError::NotHttp11);
    }
    let target = std::str::from_utf8(target).map_err(|_| HandshakeError::Malformed)?;
    Ok(target.to_owned())
}

/// RFC 6455 §4.1: the key is the base64 of 16 random bytes (24 characters with padding).
fn valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// The non-empty, trimmed elements of a comma-separated header value.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// The 101 Switching Protocols response (`Sec-WebSocket-Accept` computed from the key per RFC 6455
/// §4.2.2, `Sec-WebSocket-Protocol` echoing the chosen subprotocol when the client offered one). No
/// `Sec-WebSocket-Extensions`: none is accepted.
pub fn encode_accept(u: &Upgrade, out: &mut BytesMut) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n");
    out.extend_from_slice(b"Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key(&u.key).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = u.protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// An HTTP error response for a refused upgrade ([`HandshakeError::status`]: 400, or 426 Upgrade
/// Required with `Sec-WebSocket-Version: 13` for a wrong version), with `Connection: close` and the
/// error as a short text body. The caller closes the connection after writing it.
pub fn encode_refusal(e: &HandshakeError, out: &mut BytesMut) {
    let (status, reason) = e.status();
    let body = format!("{e}\n");
    // Writing to a BytesMut cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if *e == HandshakeError::UnsupportedVersion {
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Frame opcodes (RFC 6455 §5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Why the client's frames are not acceptable. Every variant means: send a close frame with
/// [`FrameError::close_code`], then close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RFC 6455 §5.1: a client masks every frame.
    #[error("client frame not masked")]
    Unmasked,
    /// RFC 6455 §5.2: RSV1-3 must be 0 when no extension is negotiated (none ever is).
    #[error("reserved bits set ({0:#05b})")]
    ReservedBits(u8),
    /// [MQTT-6.0.0-1]: MQTT travels in binary frames only.
    #[error("text frame (MQTT needs binary frames)")]
    Text,
    /// Opcodes 3-7 and 0xB-0xF.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// RFC 6455 §5.5: a control frame cannot be fragmented.
    #[error("fragmented control frame (opcode {0:#x})")]
    FragmentedControl(u8),
    /// RFC 6455 §5.5: a control frame's payload is at most 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// RFC 6455 §5.4: a continuation frame with no fragmented message open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// RFC 6455 §5.4: a new data frame while a fragmented message is still open.
    #[error("new message before the fragmented one was finished")]
    UnfinishedMessage,
    /// RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    #[error("64-bit payload length with the top bit set")]
    InvalidLength,
    /// A data frame's payload is larger than the deframer's `max_frame` (control frames have their own
    /// limit, [`FrameError::ControlTooLong`]).
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    TooBig { len: u64, max: usize },
    /// RFC 6455 §5.5.1: a close payload is empty or starts with a 2-byte code.
    #[error("close frame with a 1-byte payload")]
    CloseOneByte,
    /// RFC 6455 §7.4: a code that may not appear in a close frame (below 1000, 1004-1006, 1015, an
    /// unassigned code below 3000, or 5000 and up).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// RFC 6455 §5.5.1: the close reason after the code is UTF-8.
    #[error("close reason is not UTF-8")]
    CloseReasonNotUtf8,
}

impl FrameError {
    /// The status code of the close frame to send before closing (RFC 6455 §7.4.1): 1003 for a text
    /// frame (a data type the broker cannot accept), 1009 for a frame over the limit, 1007 for a reason
    /// that is not UTF-8, 1002 (protocol error) for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Text => 1003,
            FrameError::TooBig { .. } => 1009,
            FrameError::CloseReasonNotUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// A control frame met by [`Deframer::decode`], for the connection to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Answer with [`encode_pong`] of this payload (RFC 6455 §5.5.2).
    Ping(Bytes),
    /// An unsolicited or answering pong: nothing to do (it still proves the client alive).
    Pong,
    /// The client is closing, with its status code if it gave one: answer with [`encode_close`] and
    /// close. Nothing after it is decoded.
    Close(Option<u16>),
}

/// The control events of one [`Deframer::decode`] call, in order. A `Vec` because control frames are
/// rare: the usual call returns an empty one, which does not allocate.
pub type Events = Vec<Event>;

/// The data frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct DataFrame {
    /// Payload bytes still to come.
    remaining: u64,
    /// The masking key, rotated so that index 0 applies to the next byte.
    mask: [u8; 4],
}

/// Decodes the client's frames (sans-IO). The MQTT byte stream is the concatenation of binary and
/// continuation frame payloads; frame boundaries mean nothing to MQTT (a packet may span frames, a frame
/// may hold several packets).
#[derive(Debug)]
pub struct Deframer {
    max_frame: usize,
    /// Inside a fragmented binary message: its first frame had FIN clear, its last has not arrived.
    in_message: bool,
    /// Part of a data frame's payload is still to come (its header was consumed).
    data: Option<DataFrame>,
    /// A close frame was decoded: everything after it is discarded.
    closed: bool,
}

impl Deframer {
    /// A deframer for a new connection; frames with a payload above `max_frame` are an error.
    pub fn new(max_frame: usize) -> Deframer {
        Deframer {
            max_frame,
            in_message: false,
            data: None,
            closed: false,
        }
    }

    /// Consume every complete frame at the front of `input` (leave a partial frame there), unmasking
    /// payloads into `mqtt` (appended). Returns the control events met, in order.
    ///
    /// A data frame's payload is unmasked as it arrives: once its header is whole, its bytes are moved
    /// to `mqtt` and consumed even before the frame ends, so a large frame is never held twice. What is
    /// left in `input` is at most a partial header or a partial control frame (≤ 139 bytes). After a
    /// close frame, the rest of the input (and of any later call's) is discarded. After an error the
    /// connection must be closed; `input` and `mqtt` may hold part of the stream.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        mqtt: &mut BytesMut,
    ) -> Result<Events, FrameError> {
        let mut events = Events::new();
        loop {
            if self.closed {
                input.clear();
                return Ok(events);
            }
            if let Some(frame) = &mut self.data {
                let n = input
                    .len()
                    .min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
                if n == 0 {
                    return Ok(events);
                }
                let start = mqtt.len();
                mqtt.extend_from_slice(&input[..n]);
                unmask(&mut mqtt[start..], frame.mask);
                input.advance(n);
                frame.remaining -= n as u64;
                frame.mask.rotate_left(n % 4);
                if frame.remaining == 0 {
                    self.data = None;
                }
                continue;
            }
            let Some(header) = self.parse_header(input)? else {
                return Ok(events);
            };
            if header.opcode & 0x8 == 0 {
                // A data frame: its payload streams to `mqtt`.
                input.advance(header.len);
                if header.payload > 0 {
                    self.data = Some(DataFrame {
                        remaining: header.payload,
                        mask: header.mask,
                    });
                }
                continue;
            }
            // A control frame (payload ≤ 125 bytes, checked): wait for all of it.
            let payload = header.payload as usize;
            if input.len() < header.len + payload {
                return Ok(events);
            }
            input.advance(header.len);
            let mut body = input.split_to(payload);
            unmask(&mut body, header.mask);
            events.push(match header.opcode {
                opcode::PING => Event::Ping(body.freeze()),
                opcode::PONG => Event::Pong,
                _ => {
                    self.closed = true;
                    Event::Close(close_code(&body)?)
                }
            });
        }
    }

    /// Validate the header at the front of `input` (without consuming it) and update the message
    /// state for a data frame. `Ok(None)`: not all of the header is there yet. Each rule is checked as
    /// soon as the bytes it needs have arrived.
    fn parse_header(&mut self, input: &[u8]) -> Result<Option<Header>, FrameError> {
        let [b0, b1, ..] = *input else {
            // The first byte alone decides most errors; check it now rather than after the second.
            if let Some(&b0) = input.first() {
                check_first_byte(b0, self.in_message)?;
            }
            return Ok(None);
        };
        let (fin, opcode) = check_first_byte(b0, self.in_message)?;
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let len7 = b1 & 0x7F;
        let is_control = opcode & 0x8 != 0;
        if is_control && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            // 126/127 announce an extended length: refused without waiting for it.
            return Err(FrameError::ControlTooLong);
        }
        let len_bytes = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if input.len() >= 3 && len7 == 127 && input[2] & 0x80 != 0 {
            return Err(FrameError::InvalidLength);
        }
        let header_len = 2 + len_bytes + 4;
        let Some(payload) = extended_len(input, len7) else {
            return Ok(None);
        };
        if !is_control && payload > self.max_frame as u64 {
            return Err(FrameError::TooBig {
                len: payload,
                max: self.max_frame,
            });
        }
        if input.len() < header_len {
            return Ok(None);
        }
        let mask: [u8; 4] = input[header_len - 4..header_len]
            .try_into()
            .expect("4 bytes");
        if !is_control {
            self.in_message = !fin;
        }
        Ok(Some(Header {
            opcode,
            len: header_len,
            payload,
            mask,
        }))
    }
}

/// A validated frame header.
struct Header {
    opcode: u8,
    /// Bytes of header (2 to 14).
    len: usize,
    payload: u64,
    mask: [u8; 4],
}

/// The rules the first byte alone decides: RSV bits, opcode, fragmentation. Returns (FIN, opcode).
fn check_first_byte(b0: u8, in_message: bool) -> Result<(bool, u8), FrameError> {
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    if rsv != 0 {
        return Err(FrameError::ReservedBits(rsv));
    }
    let op = b0 & 0x0F;
    match op {
        opcode::CONTINUATION if !in_message => Err(FrameError::UnexpectedContinuation),
        opcode::BINARY if in_message => Err(FrameError::UnfinishedMessage),
        opcode::CONTINUATION | opcode::BINARY => Ok((fin, op)),
        opcode::TEXT => Err(FrameError::Text),
        opcode::CLOSE | opcode::PING | opcode::PONG if !fin => {
            Err(FrameError::FragmentedControl(op))
        }
        opcode::CLOSE | opcode::PING | opcode::PONG => Ok((fin, op)),
        _ => Err(FrameError::UnknownOpcode(op)),
    }
}

/// The payload length from the 7-bit field and, for 126/127, the extended field that follows it;
/// `None` while the extended field is incomplete. Non-minimal encodings are accepted (harmless).
fn extended_len(input: &[u8], len7: u8) -> Option<u64> {
    match len7 {
        126 => Some(u64::from(u16::from_be_bytes(
            input.get(2..4)?.try_into().ok()?,
        ))),
        127 => Some(u64::from_be_bytes(input.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

/// The code of a close frame's payload: none, or 2 bytes and an optional UTF-8 reason.
fn close_code(body: &[u8]) -> Result<Option<u16>, FrameError> {
    match body {
        [] => Ok(None),
        [_] => Err(FrameError::CloseOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::CloseReasonNotUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// XOR `data` with the masking key, `mask[0]` applying to `data[0]` (RFC 6455 §5.3). Eight bytes at a
/// time: this runs over every byte a WebSocket client publishes.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so of 4: the key starts over at mask[0].
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Append a frame header: FIN set, `opcode`, no mask (server frames are never masked, RFC 6455 §5.1),
/// the payload length in its shortest form.
fn write_header(opcode: u8, len: usize, out: &mut BytesMut) {
    out.reserve(10 + len);
    out.put_u8(0x80 | opcode);
    if len <= 125 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Append the header of one binary frame (FIN set, unmasked) whose `len`-byte payload the caller writes
/// next: the broker's zero-copy path, where a shared PUBLISH payload follows by reference.
pub fn encode_binary_header(len: usize, out: &mut BytesMut) {
    write_header(opcode::BINARY, len, out);
}

/// Server frames are never masked (RFC 6455 §5.1). One binary frame, FIN set.
pub fn encode_binary(payload: &[u8], out: &mut BytesMut) {
    encode_binary_header(payload.len(), out);
    out.extend_from_slice(payload);
}

/// A pong echoing a ping's payload (RFC 6455 §5.5.3). A payload over 125 bytes is cut to 125 (a ping's
/// never is: [`Deframer`] refuses it).
pub fn encode_pong(payload: &[u8], out: &mut BytesMut) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    write_header(opcode::PONG, payload.len(), out);
    out.extend_from_slice(payload);
}

/// A close frame with a status code and no reason: 1000 normal, 1001 going away (shutdown), or an
/// error's [`FrameError::close_code`] (1002 protocol error, 1003 text, 1009 too big).
pub fn encode_close(code: u16, out: &mut BytesMut) {
    write_header(opcode::CLOSE, 2, out);
    out.put_u16(code);
}

/// One connection's WebSocket state once the upgrade is done: the frames read but not yet deframed, and
/// the control frames owed to the client (pongs, the closing handshake), which its writer sends ahead
/// of its next data frame. Sans-IO like the rest; it travels with a hand-off to the client's home shard.
#[derive(Debug)]
pub struct WsConnection {
    deframer: Deframer,
    /// Bytes read from the transport, not yet deframed: at most a partial header or control frame.
    pub input: BytesMut,
    owed: BytesMut,
    /// A close frame went either way: nothing more is read.
    closed: bool,
}

impl WsConnection {
    /// The state after the upgrade; data frames above `max_frame` bytes are refused (see [`Deframer`]).
    pub fn new(max_frame: usize) -> WsConnection {
        WsConnection {
            deframer: Deframer::new(max_frame),
            input: BytesMut::new(),
            owed: BytesMut::new(),
            closed: false,
        }
    }

    /// Deframe what [`Self::input`] holds into the MQTT stream `mqtt`. Pings are answered (owed pongs);
    /// the client's close is answered with the same code and ends the stream. Returns how many MQTT
    /// bytes were appended, or `None` once the stream ended. On a frame error the close frame with its
    /// code is owed, and the connection must end.
    pub fn deframe(&mut self, mqtt: &mut BytesMut) -> Result<Option<usize>, FrameError> {
        if self.closed {
            return Ok(None);
        }
        let before = mqtt.len();
        let events = match self.deframer.decode(&mut self.input, mqtt) {
            Ok(events) => events,
            Err(e) => {
                self.close(e.close_code());
                return Err(e);
            }
        };
        for event in events {
            match event {
                Event::Ping(payload) => encode_pong(&payload, &mut self.owed),
                Event::Pong => {}
                Event::Close(code) => self.close(code.unwrap_or(1000)),
            }
        }
        let n = mqtt.len() - before;
        Ok(if n == 0 && self.closed { None } else { Some(n) })
    }

    /// Start (or answer) the closing handshake with `code`, once.
    pub fn close(&mut self, code: u16) {
        if !self.closed {
            self.closed = true;
            encode_close(code, &mut self.owed);
        }
    }

    /// Whether control frames wait to be sent.
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// The control frames to send now.
    pub fn take_owed(&mut self) -> BytesMut {
        self.owed.split()
    }
}
