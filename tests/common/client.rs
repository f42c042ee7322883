//! A thin wrapper over rumqttc 0.24 (`rumqttc::AsyncClient` for MQTT 3.1.1, `rumqttc::v5::AsyncClient`
//! for 5.0) so one test body serves both versions.
//!
//! rumqttc's event loop is driven by a "pump" task that forwards the events the tests care about into a
//! channel and stops at the first connection error (rumqttc would otherwise reconnect on the next poll,
//! hiding a broker that closed us). Calls like [`Client::subscribe`] wait for their acknowledgement;
//! messages that arrive meanwhile are buffered for [`Client::recv`].

use super::{Case, Proto, EVENT_TIMEOUT};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::v5 as p5;

/// A received application message, version-independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
}

impl Msg {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The events the pump forwards.
#[derive(Debug)]
enum Ev {
    SubAck(Vec<u8>),
    UnsubAck,
    /// An outgoing PUBLISH was written to the socket.
    Written,
    /// A QoS 1 PUBACK or QoS 2 PUBCOMP arrived: one outgoing publish completed.
    Completed,
    Publish(Msg),
    OutDisconnect,
    /// The connection ended (error text from rumqttc).
    Closed(String),
}

/// A will message for [`Opts`].
#[derive(Debug, Clone)]
pub struct ClientWill {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// Connection options; `Opts::default()` is a clean session with a 30 s keepalive.
#[derive(Debug, Clone)]
pub struct Opts {
    pub clean: bool,
    pub keepalive_secs: u64,
    pub will: Option<ClientWill>,
    /// v5 only: Session Expiry Interval. [`Opts::persistent`] sets it so a v5 session outlives its
    /// connection like a 3.1.1 clean-session-0 one.
    pub session_expiry: Option<u32>,
    /// v5 only: Receive Maximum sent in CONNECT.
    pub receive_maximum: Option<u16>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            clean: true,
            keepalive_secs: 30,
            will: None,
            session_expiry: None,
            receive_maximum: None,
        }
    }
}

impl Opts {
    /// clean session 0 (3.1.1) / clean start 0 + session expiry 1 h (5.0).
    pub fn persistent() -> Opts {
        Opts {
            clean: false,
            session_expiry: Some(3600),
            ..Opts::default()
        }
    }
    pub fn with_will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Opts {
        self.will = Some(ClientWill {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
        });
        self
    }
}

enum Api {
    V4(rumqttc::AsyncClient),
    V5(r5::AsyncClient),
}

pub struct Client {
    pub id: String,
    pub proto: Proto,
    /// Session Present from the CONNACK.
    pub session_present: bool,
    /// v5 Assigned Client Identifier from the CONNACK, if any.
    pub assigned_id: Option<String>,
    api: Api,
    events: mpsc::UnboundedReceiver<Ev>,
    /// Messages received while waiting for something else.
    pending: VecDeque<Msg>,
    pump: JoinHandle<()>,
    /// Publishes handed to rumqttc / written to the socket.
    requested: u64,
    written: u64,
    /// QoS 1/2 publishes handed to rumqttc / completed (PUBACK / PUBCOMP received).
    requested_acked: u64,
    completed: u64,
    /// Set once the pump reported the connection closed.
    closed: Option<String>,
}

fn q4(q: u8) -> rumqttc::QoS {
    rumqttc::qos(q).expect("QoS 0..=2")
}
fn q5(q: u8) -> r5::mqttbytes::QoS {
    r5::mqttbytes::qos(q).expect("QoS 0..=2")
}

fn suback_code4(c: &rumqttc::SubscribeReasonCode) -> u8 {
    match c {
        rumqttc::SubscribeReasonCode::Success(q) => *q as u8,
        rumqttc::SubscribeReasonCode::Failure => 0x80,
    }
}
fn suback_code5(c: &p5::SubscribeReasonCode) -> u8 {
    match c {
        p5::SubscribeReasonCode::Success(q) => *q as u8,
        _ => 0x80,
    }
}

impl Client {
    /// Connects with a clean session and default options.
    pub async fn connect(case: &Case, id: &str) -> Client {
        Client::connect_with(case, id, Opts::default()).await
    }

    /// Connects and waits for a successful CONNACK (panics if refused or if none comes in time).
    pub async fn connect_with(case: &Case, id: &str, opts: Opts) -> Client {
        let host = case.addr.ip().to_string();
        let port = case.addr.port();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (api, pump) = match case.proto {
            Proto::V311 => {
                let mut o = rumqttc::MqttOptions::new(id, host, port);
                o.set_clean_session(opts.clean);
                o.set_keep_alive(Duration::from_secs(opts.keepalive_secs));
                o.set_max_packet_size(1 << 20, 1 << 20);
                if let Some(w) = &opts.will {
                    o.set_last_will(rumqttc::LastWill::new(
                        &w.topic,
                        w.payload.clone(),
                        q4(w.qos),
                        w.retain,
                    ));
                }
                let (c, el) = rumqttc::AsyncClient::new(o, 1000);
                (Api::V4(c), tokio::spawn(pump_v4(el, tx)))
            }
            Proto::V5 => {
                let mut o = r5::MqttOptions::new(id, host, port);
                o.set_clean_start(opts.clean);
                o.set_keep_alive(Duration::from_secs(opts.keepalive_secs));
                o.set_max_packet_size(Some(1 << 20));
                let mut props = p5::ConnectProperties::new();
                props.session_expiry_interval = opts.session_expiry;
                props.receive_maximum = opts.receive_maximum;
                props.max_packet_size = Some(1 << 20);
                o.set_connect_properties(props);
                if let Some(w) = &opts.will {
                    o.set_last_will(p5::LastWill::new(
                        &w.topic,
                        w.payload.clone(),
                        q5(w.qos),
                        w.retain,
                        None,
                    ));
                }
                let (c, el) = r5::AsyncClient::new(o, 1000);
                (Api::V5(c), tokio::spawn(pump_v5(el, tx)))
            }
            Proto::V31 => panic!("rumqttc does not speak MQTT 3.1; use the raw client"),
        };
        // The pump forwards the CONNACK first, as a marker message (see CONNACK_MARKER).
        let first = tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{id}: no CONNACK within {EVENT_TIMEOUT:?}"))
            .unwrap_or_else(|| panic!("{id}: pump ended before CONNACK"));
        let (session_present, assigned_id) = match first {
            Ev::Closed(e) => panic!("{id}: connect failed: {e}"),
            Ev::Publish(m) if m.topic == CONNACK_MARKER => (
                m.qos == 1,
                Some(String::from_utf8(m.payload).unwrap()).filter(|s| !s.is_empty()),
            ),
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        };
        Client {
            id: id.to_string(),
            proto: case.proto,
            session_present,
            assigned_id,
            api,
            events: rx,
            pending: VecDeque::new(),
            pump,
            requested: 0,
            written: 0,
            requested_acked: 0,
            completed: 0,
            closed: None,
        }
    }

    /// Takes one event from the pump: bookkeeping events (messages, writes, acks) are absorbed and give
    /// `None`; anything else is returned. Panics on timeout or a closed connection.
    async fn step(&mut self, waiting_for: &str) -> Option<Ev> {
        let ev = match tokio::time::timeout(EVENT_TIMEOUT, self.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!(
                "{}: event pump gone while waiting for {waiting_for}",
                self.id
            ),
            Err(_) => panic!("{}: no {waiting_for} within {EVENT_TIMEOUT:?}", self.id),
        };
        match ev {
            Ev::Publish(m) => self.pending.push_back(m),
            Ev::Written => self.written += 1,
            Ev::Completed => self.completed += 1,
            Ev::Closed(e) => {
                self.closed = Some(e.clone());
                panic!(
                    "{}: connection closed while waiting for {waiting_for}: {e}",
                    self.id
                )
            }
            other => return Some(other),
        }
        None
    }

    /// Waits for the next event that is not bookkeeping (messages are buffered for `recv`).
    async fn next_control(&mut self, waiting_for: &str) -> Ev {
        loop {
            if let Some(ev) = self.step(waiting_for).await {
                return ev;
            }
        }
    }

    /// Subscribes to one filter and returns the granted QoS (or 0x80 failure) from the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> u8 {
        self.subscribe_many(&[(filter, qos)]).await[0]
    }

    /// Subscribes to several filters in one SUBSCRIBE and waits for the SUBACK.
    pub async fn subscribe_many(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        match &self.api {
            Api::V4(c) => c
                .subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f.to_string(), q4(*q))),
                )
                .await
                .unwrap(),
            Api::V5(c) => c
                .subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| p5::Filter::new(f.to_string(), q5(*q))),
                )
                .await
                .unwrap(),
        }
        match self.next_control("SUBACK").await {
            Ev::SubAck(codes) => {
                assert_eq!(codes.len(), filters.len(), "one SUBACK code per filter");
                codes
            }
            other => panic!("{}: expected SUBACK, got {other:?}", self.id),
        }
    }

    pub async fn unsubscribe(&mut self, filter: &str) {
        match &self.api {
            Api::V4(c) => c.unsubscribe(filter).await.unwrap(),
            Api::V5(c) => c.unsubscribe(filter).await.unwrap(),
        }
        match self.next_control("UNSUBACK").await {
            Ev::UnsubAck => {}
            other => panic!("{}: expected UNSUBACK, got {other:?}", self.id),
        }
    }

    /// Hands a publish to rumqttc without waiting (rumqttc keeps request order on the wire).
    pub async fn publish_nowait(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        let payload: Vec<u8> = payload.into();
        match &self.api {
            Api::V4(c) => c.publish(topic, q4(qos), retain, payload).await.unwrap(),
            Api::V5(c) => c.publish(topic, q5(qos), retain, payload).await.unwrap(),
        }
        self.requested += 1;
        if qos > 0 {
            self.requested_acked += 1;
        }
    }

    /// Waits until every publish handed over so far is written and every QoS 1/2 one acknowledged.
    pub async fn flush(&mut self) {
        while self.written < self.requested || self.completed < self.requested_acked {
            if let Some(other) = self.step("PUBACK/PUBCOMP").await {
                panic!("{}: unexpected {other:?} while waiting for acks", self.id);
            }
        }
    }

    /// Publishes and waits: QoS 0 until written to the socket, QoS 1 until PUBACK, QoS 2 until PUBCOMP.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish_nowait(topic, qos, retain, payload).await;
        self.flush().await;
    }

    /// The next message (buffered first), or panics after [`EVENT_TIMEOUT`].
    pub async fn recv(&mut self) -> Msg {
        self.recv_within(EVENT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{}: no message within {EVENT_TIMEOUT:?}", self.id))
    }

    /// The next message within `limit`, or `None`. Panics if the connection closes.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Msg> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ev = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => panic!("{}: event pump gone", self.id),
                Err(_) => return None,
            };
            match ev {
                Ev::Publish(m) => return Some(m),
                Ev::Written => self.written += 1,
                Ev::Completed => self.completed += 1,
                Ev::Closed(e) => {
                    self.closed = Some(e.clone());
                    panic!(
                        "{}: connection closed while waiting for a message: {e}",
                        self.id
                    )
                }
                other => panic!(
                    "{}: unexpected {other:?} while waiting for a message",
                    self.id
                ),
            }
        }
    }

    pub async fn recv_n(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// Collects messages until one on `marker_topic` arrives; returns those before it. With a marker
    /// published after the messages under test by the same publisher, per-publisher ordering
    /// [MQTT-4.6.0-6] means anything that was going to be delivered has arrived by then: a way to prove
    /// absence without a timed wait.
    pub async fn recv_until(&mut self, marker_topic: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            if m.topic == marker_topic {
                return out;
            }
            out.push(m);
        }
    }

    /// Asserts no message arrives for `d`. Only for absences with no later event to wait for; the
    /// caller says why in a comment.
    pub async fn expect_no_message(&mut self, d: Duration) {
        if let Some(m) = self.recv_within(d).await {
            panic!("{}: expected no message for {d:?}, got {m:?}", self.id);
        }
    }

    /// Sends DISCONNECT (normal, reason 0x00), waits until it is written, then drops the connection.
    pub async fn disconnect(mut self) {
        match &self.api {
            Api::V4(c) => c.disconnect().await.unwrap(),
            Api::V5(c) => c.disconnect().await.unwrap(),
        }
        match self.next_control("DISCONNECT written").await {
            Ev::OutDisconnect => {}
            other => panic!("{}: unexpected {other:?} while disconnecting", self.id),
        }
        self.pump.abort();
        let _ = (&mut self.pump).await;
    }

    /// Drops the TCP connection without DISCONNECT (an abnormal close: the will is published).
    pub async fn kill(mut self) {
        self.pump.abort();
        // Awaiting the aborted task guarantees the event loop, and with it the socket, is dropped.
        let _ = (&mut self.pump).await;
    }

    /// Waits for the broker to close the connection; returns rumqttc's error text.
    pub async fn wait_closed(&mut self) -> String {
        if let Some(e) = &self.closed {
            return e.clone();
        }
        loop {
            let ev = tokio::time::timeout(EVENT_TIMEOUT, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: connection not closed within {EVENT_TIMEOUT:?}",
                        self.id
                    )
                });
            match ev {
                Some(Ev::Closed(e)) => {
                    self.closed = Some(e.clone());
                    return e;
                }
                Some(Ev::Publish(m)) => self.pending.push_back(m),
                Some(_) => {}
                None => panic!("{}: event pump gone", self.id),
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// The CONNACK travels through the event channel as a fake message on this topic (qos = session
/// present, payload = assigned client id) so `connect_with` reads it in order with everything else.
const CONNACK_MARKER: &str = "\0connack";

fn connack_event(session_present: bool, assigned: Option<String>) -> Ev {
    Ev::Publish(Msg {
        topic: CONNACK_MARKER.into(),
        payload: assigned.unwrap_or_default().into_bytes(),
        qos: u8::from(session_present),
        retain: false,
        dup: false,
    })
}

async fn pump_v4(mut el: rumqttc::EventLoop, tx: mpsc::UnboundedSender<Ev>) {
    use rumqttc::{Event, Outgoing, Packet};
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(c))) => connack_event(c.session_present, None),
            Ok(Event::Incoming(Packet::Publish(p))) => Ev::Publish(Msg {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
                dup: p.dup,
            }),
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                Ev::SubAck(s.return_codes.iter().map(suback_code4).collect())
            }
            Ok(Event::Incoming(Packet::UnsubAck(_))) => Ev::UnsubAck,
            Ok(Event::Incoming(Packet::PubAck(_))) | Ok(Event::Incoming(Packet::PubComp(_))) => {
                Ev::Completed
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => Ev::Written,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::OutDisconnect,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Ev::Closed(e.to_string()));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

async fn pump_v5(mut el: r5::EventLoop, tx: mpsc::UnboundedSender<Ev>) {
    use r5::{Event, Incoming};
    use rumqttc::Outgoing;
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(c))) => connack_event(
                c.session_present,
                c.properties.and_then(|p| p.assigned_client_identifier),
            ),
            Ok(Event::Incoming(Incoming::Publish(p))) => Ev::Publish(Msg {
                topic: String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic"),
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
                dup: p.dup,
            }),
            Ok(Event::Incoming(Incoming::SubAck(s))) => {
                Ev::SubAck(s.return_codes.iter().map(suback_code5).collect())
            }
            Ok(Event::Incoming(Incoming::UnsubAck(_))) => Ev::UnsubAck,
            Ok(Event::Incoming(Incoming::PubAck(_)))
            | Ok(Event::Incoming(Incoming::PubComp(_))) => Ev::Completed,
            Ok(Event::Outgoing(Outgoing::Publish(_))) => Ev::Written,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::OutDisconnect,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Ev::Closed(e.to_string()));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}
