//! Per-shard counters. Each shard owns its own and only its thread writes them; `$SYS` totals are
//! gathered by message (`Mail::StatsQuery`), never through shared memory.

/// One shard's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Connected clients on this shard now.
    pub clients_connected: u64,
    /// Sessions (connected or persistent and away) whose home is this shard.
    pub sessions: u64,
    /// Total connections ever completed on this shard (CONNACK success).
    pub connections_total: u64,
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: u64,
    /// Bytes read from client sockets.
    pub bytes_received: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// Messages dropped because a session queue or
    /// window was full (max_queued_messages / max_queued_bytes), or a slow subscriber's socket buffer.
    pub messages_dropped: u64,
    /// Copies of v5 messages not sent because their Message Expiry Interval had passed (queued for a
    /// session, in flight before a resend, or retained).
    pub messages_expired: u64,
    /// Messages given late to a subscription whose SUBSCRIBE the kernel received before them but a
    /// shard read after them (`shard::replay`), per subscribing session or shard.
    pub messages_replayed: u64,
    /// Retained messages stored on this shard.
    pub retained_messages: u64,
    /// Subscriptions held by this shard's sessions.
    pub subscriptions: u64,
    /// TCP connections accepted by this shard's listeners (CONNECT or not).
    pub sockets_accepted: u64,
    /// Connected clients idle long enough to wait without a task now (`shard::parking`).
    pub clients_parked: u64,
}

impl ShardStats {
    pub fn add(&mut self, o: &ShardStats) {
        self.clients_connected += o.clients_connected;
        self.sessions += o.sessions;
        self.connections_total += o.connections_total;
        self.messages_received += o.messages_received;
        self.messages_sent += o.messages_sent;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.messages_dropped += o.messages_dropped;
        self.messages_expired += o.messages_expired;
        self.messages_replayed += o.messages_replayed;
        self.retained_messages += o.retained_messages;
        self.subscriptions += o.subscriptions;
        self.sockets_accepted += o.sockets_accepted;
        self.clients_parked += o.clients_parked;
    }
}
