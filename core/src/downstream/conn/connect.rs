//! CONNECT on a downstream connection: routing the target, resolving its name, opening the
//! tunnel (early bytes held, never lost), and the tunnel's events until it ends.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use super::{Exchange, HttpConn};
use crate::codec::http1::{BodyKind, RequestHead};
use crate::downstream::client::Downstream;
use crate::downstream::ctx::Ctx;
use crate::downstream::decide::{self, Decision};
use crate::downstream::local_reply;
use crate::downstream::router::Stream;
use crate::io::{ConnId, QueryId, StreamRef};
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Step, Tunnel};
use crate::upstream::cluster::Pick;
use crate::upstream::pool::Pools;

/// How a tunnel came to its end.
pub(crate) enum TunnelEnd {
    /// Both sides finished, or a timeout ended it.
    Finished,
    DownstreamReset,
    /// The upstream closed its side and the tunnel ends with it.
    UpstreamClosed,
    UpstreamReset,
}

impl HttpConn {
    /// An event on a terminated CONNECT's or an upgrade's upstream connection.
    pub(crate) fn on_upstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let Some(tunnel) = self.tunnel() else { return Vec::new() };
        let up = tunnel.upstream;
        let closes = match event {
            ConnEvent::Connected => {
                let date = ctx.clock.date(now);
                let reply = self.client.codec.encode_reply(&local_reply::connect_established(), &date, false);
                self.client.send(ctx, 200, reply);
                let tunnel = self.tunnel().expect("checked above");
                tunnel.connected(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now);
                Vec::new()
            }
            ConnEvent::ConnectFailed => {
                ctx.shared.clusters[tunnel.cluster].upstream_cx_connect_fail.inc();
                self.connect_failed(ctx, now, local_reply::CONNECT_FAILURE)
            }
            ConnEvent::Data(data) => {
                let len = tunnel.up_data(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now, data);
                ctx.shared.http(self.client.listener).downstream_cx_tx_bytes_total.add(len);
                if let Some(log) = &mut self.client.log {
                    log.sent(len as usize);
                }
                Vec::new()
            }
            ConnEvent::ReadClosed => match tunnel.up_read_closed(&mut ctx.wire) {
                Step::Done => self.end_tunnel(ctx, now, TunnelEnd::UpstreamClosed),
                Step::Continue => Vec::new(),
            },
            ConnEvent::Closed => self.end_tunnel(ctx, now, TunnelEnd::UpstreamReset),
            ConnEvent::Flushed => {
                tunnel.flushed(&mut ctx.wire, now, up);
                Vec::new()
            }
        };
        self.rearm(ctx);
        closes
    }

    pub(super) fn on_connect(&mut self, ctx: &mut Ctx, now: Instant, id: u32, head: RequestHead) -> Closes {
        let config = ctx.config.clone();
        let hcm = self.client.hcm(&config);
        let decision = decide::connect(ctx, hcm, self.local, &head.target, &head, false);
        if decision.counts_upgrade() {
            self.count_upgrade(ctx);
        }
        let (cluster, pick) = match decision {
            Decision::Tunnel { cluster, pick } => (cluster, pick),
            Decision::Refused => {
                ctx.shared.http(self.client.listener).downstream_rq_ws_on_non_ws_route.inc();
                return self.reply(ctx, now, 403, "", true);
            }
            Decision::Reply(status, text) => return self.reply(ctx, now, status, &text, true),
            Decision::Forward(index, addr) => {
                // Proxy mode: the CONNECT goes upstream, and a 2xx there makes the tunnel.
                self.client.codec.set_body(BodyKind::Tunnel);
                let id = StreamRef { conn: self.client.id, stream: id };
                let stream = Stream::start(
                    &mut self.client,
                    ctx,
                    now,
                    id,
                    head,
                    BodyKind::Tunnel,
                    index,
                    addr,
                    true,
                    false,
                );
                self.open(Exchange::Forwarding(stream));
                return Vec::new();
            }
        };
        // Bytes that came with the head belong to the tunnel.
        let early: Vec<Bytes> =
            if self.client.codec.is_empty() { Vec::new() } else { vec![self.client.codec.take_buffered()] };
        match pick {
            Pick::Addr(addr) => self.open_tunnel(ctx, now, cluster, addr, early, false),
            Pick::Resolve { host, port } => {
                let (query, resolve) = ctx.clusters.resolve_for(self.client.id, cluster, host);
                ctx.wire.push(resolve);
                let deadline = now + ctx.clusters.connect_timeout(cluster);
                // What came with the head counts against the limit, as later reads do.
                if early.iter().map(Bytes::len).sum::<usize>() >= self.client.buffer_limit {
                    ctx.wire.pause_read(self.client.id);
                }
                self.open(Exchange::Resolving { query, cluster, port, early, fin: false, deadline });
                Vec::new()
            }
            Pick::NoHost => unreachable!("decided as a 503"),
        }
    }

    /// The answer to this connection's name resolution.
    pub(crate) fn on_resolved(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        query: QueryId,
        addrs: Vec<IpAddr>,
    ) -> Closes {
        // An answer for an earlier user of this connection id is not ours.
        if !matches!(self.exchange(), Some(Exchange::Resolving { query: ours, .. }) if *ours == query) {
            return Vec::new();
        }
        let closes = self.resolved(ctx, now, addrs);
        self.rearm(ctx);
        closes
    }

    fn resolved(&mut self, ctx: &mut Ctx, now: Instant, addrs: Vec<IpAddr>) -> Closes {
        let key = self.current().expect("checked above");
        let Exchange::Resolving { cluster, port, early, fin, .. } = self.streams.remove(key) else {
            unreachable!("checked above")
        };
        match addrs.first() {
            Some(ip) => self.open_tunnel(ctx, now, cluster, SocketAddr::new(*ip, port), early, fin),
            None => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.reply(ctx, now, 503, local_reply::NO_HEALTHY_UPSTREAM, true)
            }
        }
    }

    fn open_tunnel(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        cluster: usize,
        addr: SocketAddr,
        early: Vec<Bytes>,
        fin: bool,
    ) -> Closes {
        if !ctx.shared.breakers[cluster].connections.try_acquire() {
            ctx.shared.clusters[cluster].upstream_cx_overflow.inc();
            return self.overloaded(ctx, now, true);
        }
        if let Some(log) = &mut self.client.log {
            log.upstream(cluster, addr);
        }
        let idle = self.client.hcm(&ctx.config).stream_idle_timeout;
        // A tunnel reads no more heads: give the head buffer back.
        self.client.codec.release();
        let up = ctx.connect(self.client.id, cluster, addr);
        let deadline = now + ctx.clusters.connect_timeout(cluster);
        let limits = (self.client.buffer_limit, ctx.clusters.buffer_limit(cluster));
        let stats = &ctx.shared.clusters[cluster];
        let mut tunnel = Tunnel::connect(now, (self.client.id, up), cluster, deadline, limits, idle, stats);
        for data in early {
            tunnel.down_data(&mut ctx.wire, stats, now, data);
        }
        if fin {
            let step = tunnel.down_read_closed(&mut ctx.wire);
            debug_assert!(matches!(step, Step::Continue));
        }
        self.open(Exchange::Tunnel(tunnel));
        Vec::new()
    }

    pub(super) fn connect_failed(&mut self, ctx: &mut Ctx, now: Instant, body: &str) -> Closes {
        let Some(tunnel) = self.take_tunnel() else { return Vec::new() };
        retire_tunnel(ctx, now, &tunnel, tunnel.upstream, false);
        let mut closes = self.reply(ctx, now, 503, body, true);
        closes.push((tunnel.upstream, Close::Abort));
        closes
    }

    /// The tunnel is over: close both connections. `ended_by` says which side ended it.
    pub(super) fn end_tunnel(&mut self, ctx: &mut Ctx, now: Instant, ended_by: TunnelEnd) -> Closes {
        let Some(tunnel) = self.take_tunnel() else { return Vec::new() };
        self.closing = true;
        let remote = matches!(ended_by, TunnelEnd::UpstreamClosed | TunnelEnd::UpstreamReset);
        retire_tunnel(ctx, now, &tunnel, tunnel.upstream, remote);
        let (down, up) = match ended_by {
            // A reset reaches the other end as a reset, after what was already sent to it.
            TunnelEnd::DownstreamReset => (Close::Abort, Close::FlushThenReset),
            TunnelEnd::UpstreamReset => (Close::FlushThenReset, Close::Abort),
            TunnelEnd::Finished | TunnelEnd::UpstreamClosed => (Close::Flush, Close::Flush),
        };
        vec![(self.client.id, down), (tunnel.upstream, up)]
    }

    /// Takes the tunnel out of the connection's streams.
    fn take_tunnel(&mut self) -> Option<Tunnel> {
        let key = self.current()?;
        if !matches!(self.streams[key], Exchange::Tunnel(_)) {
            return None;
        }
        match self.streams.remove(key) {
            Exchange::Tunnel(tunnel) => Some(tunnel),
            _ => None,
        }
    }
}

/// Settles a tunnel's upstream connection `up`: an upgraded one is the pool's to count, a
/// terminated CONNECT's is settled here.
pub(crate) fn retire_tunnel<E>(ctx: &mut Ctx, now: Instant, tunnel: &Tunnel<E>, up: ConnId, remote: bool) {
    if tunnel.pooled {
        ctx.with_pool(tunnel.cluster, now, |pools: &mut Pools, cx| pools.closed(up, remote, cx));
    } else {
        retire_connection(ctx, tunnel.cluster, remote);
    }
}

/// Settles an upstream connection the proxy opened itself (a terminated CONNECT's, a TCP
/// proxy's): gauges, counters and its breaker unit.
pub(crate) fn retire_connection(ctx: &Ctx, cluster: usize, remote: bool) {
    let stats = &ctx.shared.clusters[cluster];
    stats.upstream_cx_active.dec();
    stats.upstream_cx_destroy.inc();
    if remote {
        stats.upstream_cx_destroy_remote.inc();
    } else {
        stats.upstream_cx_destroy_local.inc();
    }
    ctx.shared.breakers[cluster].connections.release();
}
