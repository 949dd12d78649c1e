//! Peers: the programs at the far end of the proxy's connections (clients downstream,
//! origins and tunnel targets upstream). Each connection has one peer, a trait object, so an
//! h2 or QUIC peer plugs in beside the HTTP/1.1 ones without the world knowing.

use std::time::Duration;

use crate::ledger::{End, Ledger};
use crate::report::{Notes, Tally};
use crate::rng::Rng;

/// What a peer asks of its connection.
#[derive(Debug)]
pub enum Action {
    Write(Vec<u8>),
    /// Half-close (FIN); the peer goes on reading.
    Shutdown,
    /// Close both ways (FIN, and read no more: later bytes from the proxy fail its writes).
    Close,
    /// Reset (RST): bytes not yet read by the proxy are lost.
    Reset,
    /// Call `on_timer(token)` after this long.
    Timer(Duration, u64),
    /// A request head the proxy may answer ends at this offset of what the peer wrote.
    HeadEnd(u64),
}

/// What the world offers a peer during a callback.
pub struct Cx<'a> {
    pub now: Duration,
    pub ledger: &'a mut Ledger,
    pub tally: &'a mut Tally,
    pub notes: &'a mut Notes,
    pub(crate) actions: Vec<Action>,
    /// For `on_eof`: the proxy closed this connection while handling a timeout.
    pub by_timer: bool,
    /// (end offset of a proxy write, bytes of this connection delivered to the proxy then)
    pub(crate) marks: &'a [(u64, u64)],
    /// Bytes of this connection delivered to the proxy so far.
    pub delivered: u64,
    /// For an upstream connection opened for one client's request (a CONNECT), that client's
    /// tunnel id: lets a target that never got a whole stream header still report its end.
    pub tunnel_hint: Option<u64>,
}

impl Cx<'_> {
    pub fn write(&mut self, data: impl Into<Vec<u8>>) {
        let data = data.into();
        if !data.is_empty() {
            self.actions.push(Action::Write(data));
        }
    }

    pub fn shutdown(&mut self) {
        self.actions.push(Action::Shutdown);
    }

    pub fn close(&mut self) {
        self.actions.push(Action::Close);
    }

    pub fn reset(&mut self) {
        self.actions.push(Action::Reset);
    }

    pub fn timer(&mut self, after: Duration, token: u64) {
        self.actions.push(Action::Timer(after, token));
    }

    /// Declares that a complete request head ends at `offset` of this peer's byte stream.
    pub fn head_end(&mut self, offset: u64) {
        self.actions.push(Action::HeadEnd(offset));
    }

    pub fn violation(&mut self, what: impl Into<String>) {
        self.notes.violation(self.now, what);
    }

    /// How many of this peer's bytes the proxy had read when it wrote the byte at `offset` of
    /// what this peer received: "the proxy answers nothing it was not asked".
    pub fn delivered_when_written(&self, offset: u64) -> u64 {
        let at = self.marks.partition_point(|(end, _)| *end <= offset);
        self.marks.get(at).map_or(self.delivered, |(_, delivered)| *delivered)
    }

    /// The end a peer records when the proxy closes its connection.
    pub fn eof_end(&self) -> End {
        End::Eof { by_timer: self.by_timer }
    }
}

/// A program on one connection.
pub trait Peer {
    /// The connection is up (a client's was accepted; an origin's connect completed).
    fn on_open(&mut self, cx: &mut Cx<'_>);
    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]);
    /// The proxy half-closed (or closed after flushing) its side.
    fn on_eof(&mut self, cx: &mut Cx<'_>);
    /// The connection was reset (the proxy aborted it, or a write failed).
    fn on_reset(&mut self, cx: &mut Cx<'_>);
    fn on_timer(&mut self, _cx: &mut Cx<'_>, _token: u64) {}
    /// A client's connection was refused (no listener yet).
    fn on_refused(&mut self, _cx: &mut Cx<'_>) {}
    /// Every client is done: an origin may close its idle keep-alive connections.
    fn on_wind_down(&mut self, _cx: &mut Cx<'_>) {}
    /// Has nothing more to do. The run ends once every client is done and every connection
    /// is closed.
    fn done(&self) -> bool;
    /// Whether this is a client (the run waits for clients).
    fn is_client(&self) -> bool;
    /// A multiplexed client (HTTP/2): how many requests it may have in flight at once on its
    /// one connection. The proxy may write to it before any request (its SETTINGS). `None`:
    /// one request at a time, answered only once its head has arrived.
    fn streams(&self) -> Option<u64> {
        None
    }
    /// One line on where the peer stands, for failure reports.
    fn describe(&self) -> String;
    /// The tunnel a client opens (CONNECT clients), for [`Cx::tunnel_hint`].
    fn tunnel_id(&self) -> Option<u64> {
        None
    }
    /// The tunnel this upstream peer serves (an echo target, an origin after a 101).
    fn serving_tunnel(&self) -> Option<u64> {
        None
    }
    /// An HTTP/1.1 origin connection between requests (all written, nothing in progress).
    fn pooled_http(&self) -> bool {
        false
    }
    /// The request an HTTP/1.1 origin connection received last (its response may still be on
    /// its way to the proxy).
    fn last_request(&self) -> Option<u64> {
        None
    }
    /// Whether this client sends request `rid`.
    fn sends_request(&self, _rid: u64) -> bool {
        false
    }
    /// Final checks of the peer's own (called once, at the end).
    fn finish(&mut self, _cx: &mut Cx<'_>) {}
}

/// Makes a fresh peer for each connection accepted by a simulated server.
pub type Factory = Box<dyn FnMut(&mut Rng) -> Box<dyn Peer>>;
