//! A connection as the world sees it: the network's and the peer's side of a virtual driver
//! record.

use std::collections::VecDeque;

use crate::vnet::VConn;

#[derive(Debug)]
pub(super) enum Seg {
    Data(Vec<u8>),
    Fin,
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Connecting,
    Open,
    /// Refused or never answered: no peer.
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Down { listener: usize },
    Up { cluster: Option<usize> },
}

/// The world's own state of a connection, beside the virtual driver's record of it.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) peer: Option<usize>,
    pub(super) side: Side,
    pub(super) phase: Phase,
    // peer -> proxy
    pub(super) inbound: VecDeque<Seg>,
    pub(super) in_busy: bool,
    pub(super) delivered: u64,
    /// The proxy was told the connection is gone (`Closed`): no more inputs.
    pub(super) told_closed: bool,
    pub(super) peer_fin: bool,
    pub(super) peer_closed: bool,
    pub(super) peer_reset: bool,
    /// The peer has been told the connection ended (EOF or reset).
    pub(super) peer_ended: bool,
    /// The proxy's FIN has reached the peer.
    pub(super) fin_to_peer: bool,
    // proxy -> peer
    pub(super) out_busy: bool,
    pub(super) closed_by_timer: bool,
    /// A timeout ended this connection's tunnel (a TCP proxy's maximum duration), and the
    /// proxy closes it once its queue has drained: that close is the timer's.
    pub(super) ended_by_timer: bool,
    /// When a client's connection was accepted.
    pub(super) accepted: std::time::Duration,
    pub(super) marks: Vec<(u64, u64)>,
    pub(super) head_ends: Vec<u64>,
    // behaviour
    pub(super) read_max: usize,
    pub(super) slow: bool,
    /// An upstream connection opened on a DNS answer for a client's CONNECT.
    pub(super) after_resolve: bool,
    /// The downstream link this upstream connection was opened for.
    pub(super) opened_for: Option<u64>,
    /// A loopback connection from the proxy to one of its own listeners: the other socket
    /// of the pair (what the proxy writes on one, it reads on the other).
    pub(super) twin: Option<u64>,
    /// The request head relayed so far into a loopback connection's accepted end, until it
    /// is whole.
    pub(super) relayed_head: Option<Vec<u8>>,
    /// The client tunnel a loopback connection carries (named by its tunnel request).
    pub(super) tunnel: Option<u64>,
}

impl Link {
    pub(super) fn new(side: Side, read_max: usize, slow: bool) -> Link {
        Link {
            peer: None,
            side,
            phase: Phase::Connecting,
            inbound: VecDeque::new(),
            in_busy: false,
            delivered: 0,
            told_closed: false,
            peer_fin: false,
            peer_closed: false,
            peer_reset: false,
            peer_ended: false,
            fin_to_peer: false,
            out_busy: false,
            closed_by_timer: false,
            ended_by_timer: false,
            accepted: std::time::Duration::ZERO,
            marks: Vec::new(),
            head_ends: Vec::new(),
            read_max,
            slow,
            after_resolve: false,
            opened_for: None,
            twin: None,
            relayed_head: None,
            tunnel: None,
        }
    }
}

impl Default for Link {
    /// An upstream connection's, until `World::connect` fills it in.
    fn default() -> Link {
        Link::new(Side::Up { cluster: None }, 0, false)
    }
}

/// One line for failure reports.
pub(super) fn describe(l: &VConn<Link>) -> String {
    format!(
        "conn={:?} side={:?} phase={:?} addr={:?} delivered={} written={} unflushed={} inbound={} paused={} shutdown={} closed={:?} peer_fin={} peer_closed={} peer_reset={} told_closed={}",
        l.conn(),
        l.side,
        l.phase,
        l.target,
        l.delivered,
        l.written,
        l.unflushed,
        l.inbound.len(),
        l.paused,
        l.shutdown,
        l.closed,
        l.peer_fin,
        l.peer_closed,
        l.peer_reset,
        l.told_closed
    )
}
