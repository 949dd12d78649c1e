//! A terminated CONNECT: a raw TCP connection to the target, spliced to the downstream.
//!
//! The tunnel holds no payload of its own once open: bytes read on one side are handed to the
//! driver for the other side as the same `Bytes`. Back-pressure follows Envoy's watermarks: when
//! what is queued towards one side passes its buffer limit, the other side stops being read,
//! and it is read again once the queue has drained to half the limit.

use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::io::{CloseKind, ConnId};
use crate::proxy::Ctx;

/// Closes a tunnel asks for: (connection, how).
pub(crate) type Closes = Vec<(ConnId, CloseKind)>;

pub(crate) struct Tunnel {
    pub(crate) upstream: ConnId,
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

impl Tunnel {
    /// Opens a TCP connection to the CONNECT target; the tunnel opens once it is up.
    pub(crate) fn connect(
        ctx: &mut Ctx,
        now: Instant,
        down: ConnId,
        cluster: usize,
        addr: std::net::SocketAddr,
        down_limit: usize,
        idle: Option<Duration>,
    ) -> Tunnel {
        let upstream = ctx.connect(down, addr);
        let deadline = now + ctx.clusters.connect_timeout(cluster);
        let stats = &ctx.shared.clusters[cluster];
        stats.upstream_cx_total.inc();
        stats.upstream_cx_active.inc();
        Tunnel {
            upstream,
            cluster,
            pooled: false,
            phase: Phase::Connecting { early: SmallVec::new(), early_len: 0, deadline },
            idle,
            last_activity: now,
            down_fin: false,
            up_fin: false,
            down_limit,
            up_limit: ctx.clusters.buffer_limit(cluster),
        }
    }

    /// A tunnel over an upstream connection that just switched protocols (a `101`).
    pub(crate) fn open(
        ctx: &Ctx,
        now: Instant,
        upstream: ConnId,
        cluster: usize,
        down_limit: usize,
        idle: Option<Duration>,
    ) -> Tunnel {
        Tunnel {
            upstream,
            cluster,
            pooled: true,
            phase: Phase::Open,
            idle,
            last_activity: now,
            down_fin: false,
            up_fin: false,
            down_limit,
            up_limit: ctx.clusters.buffer_limit(cluster),
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
    pub(crate) fn down_data(&mut self, ctx: &mut Ctx, now: Instant, down: ConnId, data: Bytes) {
        self.last_activity = now;
        match &mut self.phase {
            Phase::Connecting { early, early_len, .. } => {
                *early_len += data.len();
                early.push(data);
                if *early_len >= self.down_limit {
                    ctx.wire.pause_read(down);
                }
            }
            Phase::Open => {
                ctx.shared.clusters[self.cluster].upstream_cx_tx_bytes_total.add(data.len() as u64);
                ctx.wire.write(self.upstream, data);
                if ctx.wire.queued(self.upstream) > self.up_limit {
                    ctx.wire.pause_read(down);
                }
            }
        }
    }

    /// Upstream bytes go straight down (the upstream cannot send before it is connected).
    pub(crate) fn up_data(&mut self, ctx: &mut Ctx, now: Instant, down: ConnId, data: Bytes) -> u64 {
        self.last_activity = now;
        let len = data.len() as u64;
        ctx.shared.clusters[self.cluster].upstream_cx_rx_bytes_total.add(len);
        ctx.wire.write(down, data);
        if ctx.wire.queued(down) > self.down_limit {
            ctx.wire.pause_read(self.upstream);
        }
        len
    }

    /// The target accepted the connection: the caller has queued the `200`; release what
    /// the client sent early, in order, then its half-close if it came.
    pub(crate) fn connected(&mut self, ctx: &mut Ctx, now: Instant, down: ConnId) -> Step {
        let Phase::Connecting { early, .. } = std::mem::replace(&mut self.phase, Phase::Open) else {
            return Step::Continue;
        };
        self.last_activity = now;
        for data in early {
            ctx.shared.clusters[self.cluster].upstream_cx_tx_bytes_total.add(data.len() as u64);
            ctx.wire.write(self.upstream, data);
        }
        if self.down_fin {
            ctx.wire.shutdown(self.upstream);
        } else if ctx.wire.queued(self.upstream) <= self.up_limit {
            ctx.wire.resume_read(down);
        }
        Step::Continue
    }

    pub(crate) fn down_read_closed(&mut self, ctx: &mut Ctx) -> Step {
        self.down_fin = true;
        if matches!(self.phase, Phase::Open) {
            ctx.wire.shutdown(self.upstream);
        }
        self.step()
    }

    pub(crate) fn up_read_closed(&mut self, ctx: &mut Ctx, down: ConnId) -> Step {
        self.up_fin = true;
        if self.pooled {
            // An upgraded HTTP/1.1 connection ends with its upstream: Envoy disconnects the
            // client (a terminated CONNECT passes the half-close on instead).
            return Step::Done;
        }
        ctx.wire.shutdown(down);
        self.step()
    }

    /// Bytes reached a socket; reading the other side may go on once its queue has halved.
    pub(crate) fn flushed(&mut self, ctx: &mut Ctx, now: Instant, down: ConnId, flushed: ConnId) {
        // A slow reader still draining is activity: the tunnel is not idle.
        self.last_activity = now;
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        if flushed == self.upstream && !self.down_fin && ctx.wire.queued(self.upstream) <= self.up_limit / 2 {
            ctx.wire.resume_read(down);
        } else if flushed == down && !self.up_fin && ctx.wire.queued(down) <= self.down_limit / 2 {
            ctx.wire.resume_read(self.upstream);
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
