//! The values a driver and the core exchange: ids, inputs and outputs.
//!
//! Everything here is plain data. The core never holds a socket and the driver never holds a
//! reference into the core; they share only these values.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

/// A TCP connection, accepted or opened by the core. Ids are slab indexes: an id is live from
/// the moment the core hands it out (by [`crate::Proxy::accept`] or [`Output::Connect`]) until
/// the core emits exactly one [`Output::Close`] for it; after that it may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// One HTTP stream of a downstream connection: the unit a pool binds a request to. The
/// stream number is the connection's own (an HTTP/1.1 connection numbers its requests), so an
/// answer for a stream that has ended is recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StreamRef {
    pub(crate) conn: ConnId,
    pub(crate) stream: u32,
}

/// A listening socket, numbered in configuration order (the admin listener comes last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

/// One outstanding name resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u32);

/// Why a connection ended, as far as the driver could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer reset the connection or the socket failed.
    Reset,
    /// A write failed (the peer is gone).
    WriteError,
}

/// How the driver should close a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// Write out everything queued, then close (FIN).
    Flush,
    /// Drop queued bytes and close at once; with unread input the kernel sends RST.
    Abort,
}

/// Events the driver reports. Each is handed to [`crate::Proxy::handle`] with the current time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes read from a connection, in order. Never empty.
    Data { conn: ConnId, data: Bytes },
    /// The peer shut down its write side (read returned 0).
    ReadClosed { conn: ConnId },
    /// The connection is gone (reset, or any socket error).
    Closed { conn: ConnId, reason: CloseReason },
    /// An [`Output::Connect`] succeeded.
    Connected { conn: ConnId },
    /// An [`Output::Connect`] failed; the id is still live until the core closes it.
    ConnectFailed { conn: ConnId },
    /// `bytes` of what the core asked to write reached the socket.
    Flushed { conn: ConnId, bytes: usize },
    /// A [`Output::Resolve`] finished: every address the resolver gave, both families, in its
    /// order (duplicates allowed); an empty list means the name did not resolve. The core
    /// applies the cluster's `dns_lookup_family`.
    Resolved { query: QueryId, addrs: Vec<IpAddr> },
    /// A listener could not be bound: the core stops (see [`crate::Proxy::is_finished`]).
    ListenFailed { listener: ListenerId },
}

/// Work the core asks of the driver, pulled with [`crate::Proxy::poll_output`] until `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Bind and listen; accepted sockets are reported with [`crate::Proxy::accept`].
    Listen { listener: ListenerId, addr: SocketAddr },
    /// Stop accepting on a listener and close it.
    Unlisten { listener: ListenerId },
    /// Open a TCP connection under this new id.
    Connect { conn: ConnId, addr: SocketAddr },
    /// Queue these bytes for writing; report progress with [`Input::Flushed`].
    Write { conn: ConnId, data: Bytes },
    /// After the queued bytes, shut down the write side (FIN).
    Shutdown { conn: ConnId },
    /// End the connection; the id is released.
    Close { conn: ConnId, kind: CloseKind },
    /// Stop reading this connection (the other side of its tunnel is backed up).
    PauseRead { conn: ConnId },
    /// Start reading again.
    ResumeRead { conn: ConnId },
    /// Resolve `host` to all its addresses, IPv4 and IPv6; answer with [`Input::Resolved`].
    Resolve { query: QueryId, host: String },
    /// Append an access log line (newline included) to the config's
    /// `access_log_sinks[sink]`, without holding up the loop.
    Log { sink: usize, line: Bytes },
}
