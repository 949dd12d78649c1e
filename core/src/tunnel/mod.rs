//! A raw byte tunnel between two ends: a terminated CONNECT (the client's connection and one to
//! the target) or an upgrade after its `101`. An end is whatever [`Ends`] names: a raw
//! connection on the [`Wire`] today, a stream of an HTTP/2 or HTTP/3 connection with CONNECT
//! over those, so every kind of tunnel is this one machine.
//!
//! The tunnel holds no payload of its own once open: bytes read on one side are handed to the
//! driver for the other side as the same `Bytes`. Back-pressure follows Envoy's watermarks: when
//! what is queued towards one side passes its buffer limit, the other side stops being read,
//! and it is read again once the queue has drained to half the limit.

use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::io::ConnId;
use crate::shared::ClusterStats;
use crate::transport::{Close, Wire};

/// Closes a tunnel asks for: (connection, how).
pub(crate) type Closes = Vec<(ConnId, Close)>;

/// What a tunnel needs of its two ends: where bytes and FINs go, how much is queued towards
/// an end, and reading an end paused or resumed.
pub(crate) trait Ends {
    /// Names one end.
    type End: Copy + Eq;
    fn write(&mut self, end: Self::End, data: Bytes);
    /// Bytes written towards `end` and not yet taken by it.
    fn queued(&self, end: Self::End) -> usize;
    /// No more bytes go towards `end` (a FIN, or END_STREAM).
    fn shutdown(&mut self, end: Self::End);
    fn pause_read(&mut self, end: Self::End);
    fn resume_read(&mut self, end: Self::End);
}

/// Raw connections are ends on the wire.
impl Ends for Wire {
    type End = ConnId;

    fn write(&mut self, end: ConnId, data: Bytes) {
        Wire::write(self, end, data);
    }

    fn queued(&self, end: ConnId) -> usize {
        Wire::queued(self, end)
    }

    fn shutdown(&mut self, end: ConnId) {
        Wire::shutdown(self, end);
    }

    fn pause_read(&mut self, end: ConnId) {
        Wire::pause_read(self, end);
    }

    fn resume_read(&mut self, end: ConnId) {
        Wire::resume_read(self, end);
    }
}

pub(crate) struct Tunnel<E = ConnId> {
    pub(crate) downstream: E,
    pub(crate) upstream: E,
    pub(crate) cluster: usize,
    /// The upstream connection came from the HTTP pool (an upgrade), rather than being opened
    /// for a terminated CONNECT.
    pub(crate) pooled: bool,
    phase: Phase,
    /// `stream_idle_timeout` / route `idle_timeout`: the tunnel ends after this long without
    /// a byte either way.
    idle: Option<Duration>,
    last_activity: Instant,
    /// The downstream has half-closed (forwarded once open).
    down_fin: bool,
    /// The upstream has half-closed (forwarded at once).
    up_fin: bool,
    down_limit: usize,
    up_limit: usize,
}

enum Phase {
    /// The TCP connection to the target is being set up; downstream bytes wait here, never
    /// streamed before the tunnel is up and never dropped.
    Connecting {
        early: SmallVec<[Bytes; 4]>,
        early_len: usize,
        deadline: Instant,
    },
    Open,
}

/// What a tunnel event means for the connection around it.
pub(crate) enum Step {
    Continue,
    /// Both directions are finished: close both connections after flushing.
    Done,
}

impl<E: Copy + Eq> Tunnel<E> {
    /// A tunnel whose upstream connection (to the CONNECT target) is being opened; it opens
    /// once that is up, or fails at `deadline`.
    pub(crate) fn connect(
        now: Instant,
        (downstream, upstream): (E, E),
        cluster: usize,
        deadline: Instant,
        (down_limit, up_limit): (usize, usize),
        idle: Option<Duration>,
        stats: &ClusterStats,
    ) -> Tunnel<E> {
        stats.upstream_cx_total.inc();
        stats.upstream_cx_active.inc();
        Tunnel::pending(now, (downstream, upstream), cluster, deadline, (down_limit, up_limit), idle)
    }

    /// A tunnel whose upstream end is not there yet (an HTTP tunnel waiting for its 2xx),
    /// holding what the downstream sends until [`Self::connected`]; the caller counts the
    /// upstream connection, if it is one of its own.
    pub(crate) fn pending(
        now: Instant,
        (downstream, upstream): (E, E),
        cluster: usize,
        deadline: Instant,
        (down_limit, up_limit): (usize, usize),
        idle: Option<Duration>,
    ) -> Tunnel<E> {
        Tunnel {
            downstream,
            upstream,
            cluster,
            pooled: false,
            phase: Phase::Connecting { early: SmallVec::new(), early_len: 0, deadline },
            idle,
            last_activity: now,
            down_fin: false,
            up_fin: false,
            down_limit,
            up_limit,
        }
    }

    /// Another upstream end while still connecting (a retry, or the stream an HTTP tunnel was
    /// given), with a new connect deadline.
    pub(crate) fn retarget(&mut self, upstream: E, at: Instant) {
        self.upstream = upstream;
        if let Phase::Connecting { deadline, .. } = &mut self.phase {
            *deadline = at;
        }
    }

    /// Bytes held from the downstream while connecting.
    pub(crate) fn held(&self) -> usize {
        match &self.phase {
            Phase::Connecting { early_len, .. } => *early_len,
            Phase::Open => 0,
        }
    }

    /// A tunnel over an upstream connection that just switched protocols (a `101`).
    pub(crate) fn open(
        now: Instant,
        (downstream, upstream): (E, E),
        cluster: usize,
        (down_limit, up_limit): (usize, usize),
        idle: Option<Duration>,
    ) -> Tunnel<E> {
        Tunnel {
            downstream,
            upstream,
            cluster,
            pooled: true,
            phase: Phase::Open,
            idle,
            last_activity: now,
            down_fin: false,
            up_fin: false,
            down_limit,
            up_limit,
        }
    }

    /// The next instant this tunnel must be looked at: its connect or idle deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { deadline, .. } => Some(deadline),
            Phase::Open => self.idle.map(|idle| self.last_activity + idle),
        }
    }

    /// Open, and idle for its whole idle timeout.
    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Open) && self.idle.is_some_and(|idle| self.last_activity + idle <= now)
    }

    /// Still connecting at the connect deadline.
    pub(crate) fn connect_expired(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Connecting { deadline, .. } if deadline <= now)
    }

    /// Downstream bytes: forwarded when open, held while connecting.
    pub(crate) fn down_data(
        &mut self,
        io: &mut impl Ends<End = E>,
        stats: &ClusterStats,
        now: Instant,
        data: Bytes,
    ) {
        let down = self.downstream;
        self.last_activity = now;
        match &mut self.phase {
            Phase::Connecting { early, early_len, .. } => {
                *early_len += data.len();
                early.push(data);
                if *early_len >= self.down_limit {
                    io.pause_read(down);
                }
            }
            Phase::Open => {
                stats.upstream_cx_tx_bytes_total.add(data.len() as u64);
                io.write(self.upstream, data);
                if io.queued(self.upstream) > self.up_limit {
                    io.pause_read(down);
                }
            }
        }
    }

    /// Upstream bytes go straight down (the upstream cannot send before it is connected).
    pub(crate) fn up_data(
        &mut self,
        io: &mut impl Ends<End = E>,
        stats: &ClusterStats,
        now: Instant,
        data: Bytes,
    ) -> u64 {
        self.last_activity = now;
        let len = data.len() as u64;
        stats.upstream_cx_rx_bytes_total.add(len);
        io.write(self.downstream, data);
        if io.queued(self.downstream) > self.down_limit {
            io.pause_read(self.upstream);
        }
        len
    }

    /// The target accepted the connection: the caller has queued the `200`; release what
    /// the client sent early, in order, then its half-close if it came.
    pub(crate) fn connected(
        &mut self,
        io: &mut impl Ends<End = E>,
        stats: &ClusterStats,
        now: Instant,
    ) -> Step {
        let Phase::Connecting { early, .. } = std::mem::replace(&mut self.phase, Phase::Open) else {
            return Step::Continue;
        };
        self.last_activity = now;
        for data in early {
            stats.upstream_cx_tx_bytes_total.add(data.len() as u64);
            io.write(self.upstream, data);
        }
        if self.down_fin {
            io.shutdown(self.upstream);
        }
        self.read_down_if_room(io);
        Step::Continue
    }

    /// Reads the downstream again (after the bytes it sent before the tunnel opened went
    /// upstream) unless it has finished or those bytes are backed up past the limit.
    pub(crate) fn read_down_if_room(&self, io: &mut impl Ends<End = E>) {
        if !self.down_fin && io.queued(self.upstream) <= self.up_limit {
            io.resume_read(self.downstream);
        }
    }

    pub(crate) fn down_read_closed(&mut self, io: &mut impl Ends<End = E>) -> Step {
        self.down_fin = true;
        if matches!(self.phase, Phase::Open) {
            io.shutdown(self.upstream);
        }
        self.step()
    }

    pub(crate) fn up_read_closed(&mut self, io: &mut impl Ends<End = E>) -> Step {
        self.up_fin = true;
        if self.pooled {
            // An upgraded HTTP/1.1 connection ends with its upstream: Envoy disconnects the
            // client (a terminated CONNECT passes the half-close on instead).
            return Step::Done;
        }
        io.shutdown(self.downstream);
        self.step()
    }

    /// Bytes reached a socket; reading the other side may go on once its queue has halved.
    pub(crate) fn flushed(&mut self, io: &mut impl Ends<End = E>, now: Instant, flushed: E) {
        let down = self.downstream;
        // A slow reader still draining is activity: the tunnel is not idle.
        self.last_activity = now;
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        if flushed == self.upstream && !self.down_fin && io.queued(self.upstream) <= self.up_limit / 2 {
            io.resume_read(down);
        } else if flushed == down && !self.up_fin && io.queued(down) <= self.down_limit / 2 {
            io.resume_read(self.upstream);
        }
    }

    fn step(&self) -> Step {
        if self.down_fin && self.up_fin {
            Step::Done
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::io::Output;
    use crate::stats::Stats;

    struct Rig {
        wire: Wire,
        stats: ClusterStats,
        store: Stats,
        down: ConnId,
        up: ConnId,
        now: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            let mut wire = Wire::default();
            let (down, up) = (wire.alloc(), wire.alloc());
            let store = Stats::default();
            let stats = ClusterStats::new(&store, "c");
            Rig { wire, stats, store, down, up, now: burrow_sim::epoch() }
        }

        fn connecting(&self, limit: usize) -> Tunnel {
            let deadline = self.now + Duration::from_secs(5);
            let idle = Some(Duration::from_secs(60));
            Tunnel::connect(self.now, (self.down, self.up), 0, deadline, (limit, limit), idle, &self.stats)
        }

        fn outputs(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.wire.pop()).collect()
        }
    }

    fn data(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn early_bytes_wait_for_the_connection_then_go_in_order_with_the_half_close() {
        let mut rig = Rig::new();
        let mut tunnel = rig.connecting(1024);
        tunnel.down_data(&mut rig.wire, &rig.stats, rig.now, data("one"));
        tunnel.down_data(&mut rig.wire, &rig.stats, rig.now, data("two"));
        assert!(matches!(tunnel.down_read_closed(&mut rig.wire), Step::Continue));
        assert!(rig.outputs().is_empty(), "nothing goes upstream before it is connected");
        tunnel.connected(&mut rig.wire, &rig.stats, rig.now);
        let up = rig.up;
        assert_eq!(
            rig.outputs(),
            vec![
                Output::Write { conn: up, data: data("one") },
                Output::Write { conn: up, data: data("two") },
                Output::Shutdown { conn: up },
            ]
        );
        assert_eq!(rig.store.value("cluster.c.upstream_cx_tx_bytes_total"), Some(6));
    }

    #[test]
    fn early_bytes_past_the_limit_pause_the_client() {
        let mut rig = Rig::new();
        let mut tunnel = rig.connecting(4);
        tunnel.down_data(&mut rig.wire, &rig.stats, rig.now, data("abcd"));
        assert_eq!(rig.outputs(), vec![Output::PauseRead { conn: rig.down }]);
        tunnel.connected(&mut rig.wire, &rig.stats, rig.now);
        let (down, up) = (rig.down, rig.up);
        assert_eq!(
            rig.outputs(),
            vec![Output::Write { conn: up, data: data("abcd") }, Output::ResumeRead { conn: down }]
        );
    }

    #[test]
    fn a_backed_up_side_pauses_the_other_until_it_drains_to_half() {
        let mut rig = Rig::new();
        let mut tunnel = rig.connecting(4);
        tunnel.connected(&mut rig.wire, &rig.stats, rig.now);
        rig.outputs();
        tunnel.up_data(&mut rig.wire, &rig.stats, rig.now, data("12345"));
        let (down, up) = (rig.down, rig.up);
        assert_eq!(
            rig.outputs(),
            vec![Output::Write { conn: down, data: data("12345") }, Output::PauseRead { conn: up }]
        );
        rig.wire.flushed(down, 2);
        tunnel.flushed(&mut rig.wire, rig.now, down);
        assert!(rig.outputs().is_empty(), "3 bytes queued is above half the limit");
        rig.wire.flushed(down, 1);
        tunnel.flushed(&mut rig.wire, rig.now, down);
        assert_eq!(rig.outputs(), vec![Output::ResumeRead { conn: up }]);
    }

    #[test]
    fn half_closes_cross_and_both_end_the_tunnel() {
        let mut rig = Rig::new();
        let mut tunnel = rig.connecting(1024);
        tunnel.connected(&mut rig.wire, &rig.stats, rig.now);
        rig.outputs();
        assert!(matches!(tunnel.up_read_closed(&mut rig.wire), Step::Continue));
        assert_eq!(rig.outputs(), vec![Output::Shutdown { conn: rig.down }]);
        assert!(matches!(tunnel.down_read_closed(&mut rig.wire), Step::Done));
        assert_eq!(rig.outputs(), vec![Output::Shutdown { conn: rig.up }]);
    }

    #[test]
    fn deadlines_are_the_connect_timeout_then_the_idle_timeout_from_the_last_byte() {
        let mut rig = Rig::new();
        let mut tunnel = rig.connecting(1024);
        assert_eq!(tunnel.deadline(), Some(rig.now + Duration::from_secs(5)));
        assert!(tunnel.connect_expired(rig.now + Duration::from_secs(5)));
        let later = rig.now + Duration::from_secs(1);
        tunnel.connected(&mut rig.wire, &rig.stats, later);
        assert!(!tunnel.connect_expired(later + Duration::from_secs(10)));
        assert_eq!(tunnel.deadline(), Some(later + Duration::from_secs(60)));
        let last = later + Duration::from_secs(30);
        tunnel.down_data(&mut rig.wire, &rig.stats, last, data("x"));
        assert!(!tunnel.idle_expired(last + Duration::from_secs(59)));
        assert!(tunnel.idle_expired(last + Duration::from_secs(60)));
    }

    /// Ends of another kind: the client's connection on one side, a stream of a multiplexed
    /// upstream connection on the other (as a CONNECT over HTTP/2 has). The machine is the same.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Side {
        Conn,
        Stream(u32),
    }

    #[derive(Default)]
    struct Multiplexed {
        log: Vec<String>,
        /// Bytes queued towards the stream (a peer that has not opened its window).
        stream_queued: usize,
    }

    impl Ends for Multiplexed {
        type End = Side;

        fn write(&mut self, end: Side, data: Bytes) {
            if let Side::Stream(_) = end {
                self.stream_queued += data.len();
            }
            self.log.push(format!("{end:?} <- {}", String::from_utf8_lossy(&data)));
        }

        fn queued(&self, end: Side) -> usize {
            if end == Side::Conn {
                0
            } else {
                self.stream_queued
            }
        }

        fn shutdown(&mut self, end: Side) {
            self.log.push(format!("{end:?} end"));
        }

        fn pause_read(&mut self, end: Side) {
            self.log.push(format!("{end:?} paused"));
        }

        fn resume_read(&mut self, end: Side) {
            self.log.push(format!("{end:?} resumed"));
        }
    }

    #[test]
    fn a_tunnel_into_a_stream_moves_bytes_ends_and_back_pressure_as_between_connections() {
        let rig = Rig::new();
        let mut io = Multiplexed::default();
        let (stream, deadline) = (Side::Stream(1), rig.now + Duration::from_secs(5));
        let mut tunnel =
            Tunnel::connect(rig.now, (Side::Conn, stream), 0, deadline, (8, 8), None, &rig.stats);
        tunnel.down_data(&mut io, &rig.stats, rig.now, data("early"));
        assert!(io.log.is_empty(), "nothing goes to the stream before it is open");
        tunnel.connected(&mut io, &rig.stats, rig.now);
        tunnel.down_data(&mut io, &rig.stats, rig.now, data("more"));
        assert_eq!(io.log, ["Stream(1) <- early", "Conn resumed", "Stream(1) <- more", "Conn paused"]);
        io.log.clear();
        io.stream_queued = 2;
        tunnel.flushed(&mut io, rig.now, stream);
        tunnel.up_data(&mut io, &rig.stats, rig.now, data("reply"));
        assert!(matches!(tunnel.up_read_closed(&mut io), Step::Continue));
        assert!(matches!(tunnel.down_read_closed(&mut io), Step::Done));
        assert_eq!(io.log, ["Conn resumed", "Conn <- reply", "Conn end", "Stream(1) end"]);
    }
}
