//! CONNECT over HTTP/2: a stream terminated into a raw TCP connection to the target, many at
//! once on one client connection. The tunnel machine is the HTTP/1.1 one; its ends here are
//! the stream (END_STREAM for a FIN, its window for back-pressure) and the connection.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use h2::Reason;

use super::{Entry, Exchange, H2Conn};
use crate::codec::h2::ServerCodec;
use crate::codec::http1::response::UpEvent;
use crate::codec::http1::{BodyKind, RequestHead};
use crate::downstream::conn::retire_tunnel;
use crate::downstream::ctx::Ctx;
use crate::downstream::decide::Decision;
use crate::downstream::local_reply;
use crate::io::{ConnId, QueryId, StreamRef};
use crate::shared::Shared;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Ends, Step, Tunnel};
use crate::upstream::cluster::Pick;
use crate::upstream::pool::{PoolCtx, PoolEvent, Pools, Released};

/// A tunnel end: the client's stream, the connection to the target, or (a CONNECT passed on
/// to an HTTP/2 upstream) the request's stream on a pooled connection, named by the
/// connection and the client stream's wire id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Stream(usize),
    Conn(ConnId),
    Pooled(ConnId, u32),
}

pub(super) struct H2Ends<'a> {
    pub(super) ctx: &'a mut Ctx,
    pub(super) codec: &'a mut ServerCodec,
    /// The client's connection: with a wire id, it names a pooled stream's request.
    pub(super) down: ConnId,
    pub(super) cluster: usize,
    pub(super) now: Instant,
}

impl H2Ends<'_> {
    fn pooled<T>(&mut self, f: impl FnOnce(&mut Pools, &mut PoolCtx<'_>) -> T) -> T {
        self.ctx.with_pool(self.cluster, self.now, f)
    }
}

impl Ends for H2Ends<'_> {
    type End = Side;

    fn write(&mut self, end: Side, data: Bytes) {
        match end {
            Side::Stream(key) => self.codec.send_data(key, data),
            Side::Conn(conn) => self.ctx.wire.write(conn, data),
            Side::Pooled(up, id) => {
                let waiter = StreamRef { conn: self.down, stream: id };
                self.pooled(|p, cx| p.send_data(up, waiter, data, cx));
            }
        }
    }

    fn queued(&self, end: Side) -> usize {
        match end {
            Side::Stream(key) => self.codec.queued(key),
            Side::Conn(conn) => self.ctx.wire.queued(conn),
            Side::Pooled(up, id) => self.ctx.pools.queued(up, StreamRef { conn: self.down, stream: id }),
        }
    }

    fn shutdown(&mut self, end: Side) {
        match end {
            Side::Stream(key) => self.codec.send_end(key),
            Side::Conn(conn) => self.ctx.wire.shutdown(conn),
            Side::Pooled(up, id) => {
                let waiter = StreamRef { conn: self.down, stream: id };
                self.pooled(|p, cx| p.send_end(up, waiter, cx));
            }
        }
    }

    fn pause_read(&mut self, end: Side) {
        match end {
            Side::Stream(key) => self.codec.pause(key),
            Side::Conn(conn) => {
                self.ctx.wire.pause_read(conn);
            }
            Side::Pooled(up, id) => {
                let waiter = StreamRef { conn: self.down, stream: id };
                self.pooled(|p, cx| p.pause_stream(up, waiter, true, cx));
            }
        }
    }

    fn resume_read(&mut self, end: Side) {
        match end {
            Side::Stream(key) => self.codec.resume(key),
            Side::Conn(conn) => {
                self.ctx.wire.resume_read(conn);
            }
            Side::Pooled(up, id) => {
                let waiter = StreamRef { conn: self.down, stream: id };
                self.pooled(|p, cx| p.pause_stream(up, waiter, false, cx));
            }
        }
    }
}

impl H2Conn {
    /// Runs `f` on the tunnel under `key` with its ends at hand.
    pub(super) fn with_tunnel<T>(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        f: impl FnOnce(&mut Tunnel<Side>, &mut H2Ends<'_>, &Shared) -> T,
    ) -> Option<T> {
        let Some(Some(Entry { exchange: Exchange::Tunnel(tunnel), .. })) = self.exchanges.get_mut(key) else {
            return None;
        };
        let shared = ctx.shared.clone();
        let mut ends = H2Ends { ctx, codec: &mut self.codec, down: self.id, cluster: tunnel.cluster, now };
        Some(f(tunnel, &mut ends, &shared))
    }

    pub(super) fn on_connect(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        head: RequestHead,
        decision: Decision,
        end: bool,
    ) -> Closes {
        if decision.counts_upgrade() {
            self.count_upgrade(ctx, key);
        }
        match decision {
            Decision::Tunnel { cluster, pick: Pick::Addr(addr) } => {
                self.open_tunnel(ctx, now, key, cluster, addr, Vec::new(), end)
            }
            Decision::Tunnel { cluster, pick: Pick::Resolve { host, port } } => {
                let (query, resolve) = ctx.clusters.resolve_for(self.id, cluster, host);
                ctx.wire.push(resolve);
                let deadline = now + ctx.clusters.connect_timeout(cluster);
                self.insert(
                    key,
                    Exchange::Resolving { query, cluster, port, early: Vec::new(), fin: end, deadline },
                );
                Vec::new()
            }
            Decision::Refused => {
                ctx.shared.http(self.listener).downstream_rq_ws_on_non_ws_route.inc();
                self.reply(ctx, now, key, &local_reply::text(403, ""))
            }
            Decision::Reply(status, text) => self.reply(ctx, now, key, &local_reply::text(status, &text)),
            // Proxy mode: the CONNECT goes upstream, and a 2xx there makes the tunnel.
            Decision::Forward(index, addr) => {
                self.forward(ctx, now, key, head, BodyKind::Tunnel, (index, addr), true)
            }
            Decision::Tunnel { pick: Pick::NoHost, .. } => {
                unreachable!("a CONNECT with no host is answered 503 when decided")
            }
        }
    }

    /// The answer to a CONNECT target's resolution.
    pub(crate) fn on_resolved(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        query: QueryId,
        addrs: Vec<IpAddr>,
    ) -> Closes {
        let found = self.exchanges.iter().position(|e| {
            matches!(e, Some(Entry { exchange: Exchange::Resolving { query: q, .. }, .. }) if *q == query)
        });
        let Some(key) = found else { return Vec::new() };
        let Some(Exchange::Resolving { cluster, port, early, fin, .. }) =
            self.exchanges[key].as_mut().map(|e| std::mem::replace(&mut e.exchange, Exchange::Answered))
        else {
            unreachable!("found above")
        };
        let mut closes = match addrs.first() {
            Some(ip) => self.open_tunnel(ctx, now, key, cluster, SocketAddr::new(*ip, port), early, fin),
            None => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.reply(ctx, now, key, &local_reply::text(503, local_reply::NO_HEALTHY_UPSTREAM))
            }
        };
        closes.extend(self.drive(ctx, now));
        self.maybe_retire(ctx, now, key);
        self.rearm(ctx);
        closes
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_tunnel(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        cluster: usize,
        addr: SocketAddr,
        early: Vec<Bytes>,
        fin: bool,
    ) -> Closes {
        if !ctx.shared.breakers[cluster].connections.try_acquire() {
            ctx.shared.clusters[cluster].upstream_cx_overflow.inc();
            return self.reply(ctx, now, key, &local_reply::overloaded());
        }
        if let Some(log) = self.log(key) {
            log.upstream(cluster, addr);
        }
        let idle = ctx.config.listeners[self.listener].hcm().stream_idle_timeout;
        let up = ctx.connect(self.id, cluster, addr);
        self.tunnels.insert(up, key);
        let deadline = now + ctx.clusters.connect_timeout(cluster);
        let limits = (self.buffer_limit, ctx.clusters.buffer_limit(cluster));
        let stats = &ctx.shared.clusters[cluster];
        let tunnel =
            Tunnel::connect(now, (Side::Stream(key), Side::Conn(up)), cluster, deadline, limits, idle, stats);
        self.insert(key, Exchange::Tunnel(tunnel));
        self.with_tunnel(ctx, now, key, |tunnel, ends, shared| {
            let stats = &shared.clusters[cluster];
            for data in early {
                tunnel.down_data(ends, stats, now, data);
            }
            if fin {
                let _ = tunnel.down_read_closed(ends);
            }
        });
        Vec::new()
    }

    pub(super) fn tunnel_data(&mut self, ctx: &mut Ctx, now: Instant, key: usize, data: Bytes) -> Closes {
        self.with_tunnel(ctx, now, key, |tunnel, ends, shared| {
            tunnel.down_data(ends, &shared.clusters[tunnel.cluster], now, data);
        });
        Vec::new()
    }

    /// The client's END_STREAM: a FIN to the target (Envoy C7).
    pub(super) fn tunnel_fin(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        match self.with_tunnel(ctx, now, key, |tunnel, ends, _| tunnel.down_read_closed(ends)) {
            Some(Step::Done) => self.end_tunnel(ctx, now, key, false),
            _ => Vec::new(),
        }
    }

    pub(super) fn tunnel_sent(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        self.with_tunnel(ctx, now, key, |tunnel, ends, _| tunnel.flushed(ends, now, Side::Stream(key)));
        Vec::new()
    }

    pub(super) fn tunnel_timer(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        let Some(Exchange::Tunnel(tunnel)) = self.entry(key) else { return Vec::new() };
        let cluster = tunnel.cluster;
        if tunnel.connect_expired(now) {
            ctx.shared.clusters[cluster].upstream_cx_connect_timeout.inc();
            ctx.shared.clusters[cluster].upstream_cx_connect_fail.inc();
            return self.tunnel_failed(ctx, now, key, local_reply::CONNECT_TIMEOUT);
        }
        if tunnel.idle_expired(now) {
            ctx.shared.http(self.listener).downstream_rq_idle_timeout.inc();
            let closes = self.take_tunnel(ctx, now, key, false, Close::Flush);
            self.reset(ctx, key, Reason::CANCEL);
            return closes;
        }
        Vec::new()
    }

    /// An event on a terminated CONNECT's connection to its target.
    pub(crate) fn on_upstream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        conn: ConnId,
        event: ConnEvent,
    ) -> Closes {
        let Some(&key) = self.tunnels.get(&conn) else { return Vec::new() };
        let mut closes = match event {
            ConnEvent::Connected => {
                let date = ctx.clock.date(now);
                let server = ctx.config.listeners[self.listener].hcm().server_name.clone();
                ctx.shared.http(self.listener).response(200);
                let head = super::down::local_response(&local_reply::connect_established(), &date, &server);
                self.codec.send_head(key, head, false);
                self.with_tunnel(ctx, now, key, |tunnel, ends, shared| {
                    tunnel.connected(ends, &shared.clusters[tunnel.cluster], now);
                });
                Vec::new()
            }
            ConnEvent::ConnectFailed => {
                if let Some(Exchange::Tunnel(tunnel)) = self.entry(key) {
                    ctx.shared.clusters[tunnel.cluster].upstream_cx_connect_fail.inc();
                }
                self.tunnel_failed(ctx, now, key, local_reply::CONNECT_FAILURE)
            }
            ConnEvent::Data(data) => {
                let sent = self.with_tunnel(ctx, now, key, |tunnel, ends, shared| {
                    tunnel.up_data(ends, &shared.clusters[tunnel.cluster], now, data)
                });
                if let (Some(log), Some(sent)) = (self.log(key), sent) {
                    log.sent(sent as usize);
                }
                Vec::new()
            }
            // The target's FIN: END_STREAM to the client, which may still send (Envoy C7).
            ConnEvent::ReadClosed => {
                match self.with_tunnel(ctx, now, key, |tunnel, ends, _| tunnel.up_read_closed(ends)) {
                    Some(Step::Done) => self.end_tunnel(ctx, now, key, true),
                    _ => Vec::new(),
                }
            }
            // The target reset: the stream is reset too (Envoy C7).
            ConnEvent::Closed => {
                let closes = self.take_tunnel(ctx, now, key, true, Close::Abort);
                self.reset(ctx, key, Reason::CONNECT_ERROR);
                closes
            }
            ConnEvent::Flushed => {
                self.with_tunnel(ctx, now, key, |tunnel, ends, _| {
                    tunnel.flushed(ends, now, Side::Conn(conn))
                });
                Vec::new()
            }
        };
        closes.extend(self.drive(ctx, now));
        self.maybe_retire(ctx, now, key);
        self.rearm(ctx);
        closes
    }

    /// Both directions finished: the target's connection closes once flushed, and the stream
    /// goes once its END_STREAM has.
    fn end_tunnel(&mut self, ctx: &mut Ctx, now: Instant, key: usize, remote: bool) -> Closes {
        // An upgrade's origin that closes ends the stream cleanly (Envoy resets it with
        // CONNECT_ERROR); a terminated CONNECT has sent its END_STREAM already.
        self.codec.send_end(key);
        self.take_tunnel(ctx, now, key, remote, Close::Flush)
    }

    /// The target could not be reached: the CONNECT is answered 503.
    fn tunnel_failed(&mut self, ctx: &mut Ctx, now: Instant, key: usize, body: &str) -> Closes {
        let mut closes = self.take_tunnel(ctx, now, key, false, Close::Abort);
        closes.extend(self.reply(ctx, now, key, &local_reply::text(503, body)));
        closes
    }

    /// Takes the tunnel out of its stream (which stays until its response has left) and
    /// settles its connection, closed as `close` says.
    fn take_tunnel(&mut self, ctx: &mut Ctx, now: Instant, key: usize, remote: bool, close: Close) -> Closes {
        let Some(entry) = self.exchanges.get_mut(key).and_then(Option::as_mut) else { return Vec::new() };
        let Exchange::Tunnel(tunnel) = std::mem::replace(&mut entry.exchange, Exchange::Answered) else {
            return Vec::new();
        };
        self.retire(ctx, now, &tunnel, remote, close)
    }

    /// Settles a tunnel's upstream end: a connection is closed as `close` says, a pooled
    /// stream given back (reset unless it ended cleanly).
    fn retire(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        tunnel: &Tunnel<Side>,
        remote: bool,
        close: Close,
    ) -> Closes {
        match tunnel.upstream {
            Side::Conn(up) => {
                self.tunnels.remove(&up);
                retire_tunnel(ctx, now, tunnel, up, remote);
                vec![(up, close)]
            }
            Side::Pooled(up, id) => {
                self.forwarded.remove(&id);
                let waiter = StreamRef { conn: self.id, stream: id };
                let released = ctx.with_pool(tunnel.cluster, now, |p: &mut Pools, cx| match close {
                    Close::Flush => p.release(up, waiter, true, cx),
                    _ => {
                        p.abandon(up, waiter, cx);
                        Released::Idle
                    }
                });
                match released {
                    Released::Rebound { waiter } => {
                        ctx.defer(waiter, PoolEvent::Bound(up));
                        Vec::new()
                    }
                    Released::Idle => Vec::new(),
                    Released::Close => vec![(up, Close::Flush)],
                }
            }
            Side::Stream(_) => unreachable!("the upstream end is not the client's stream"),
        }
    }

    /// A tunnel whose stream has gone (reset by the client, or the connection closed).
    pub(super) fn drop_tunnel(&mut self, ctx: &mut Ctx, now: Instant, tunnel: Tunnel<Side>) -> Closes {
        self.retire(ctx, now, &tunnel, false, Close::Abort)
    }

    /// A pool event for a tunnel into an upstream's stream: its bytes, its end, or its loss.
    pub(super) fn tunnel_pool_event(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        event: PoolEvent,
    ) -> Closes {
        let Some(Exchange::Tunnel(tunnel)) = self.entry(key) else { return Vec::new() };
        let Side::Pooled(up, id) = tunnel.upstream else { return Vec::new() };
        let waiter = StreamRef { conn: self.id, stream: id };
        match event {
            PoolEvent::Response(_) => {
                while let Some(event) = ctx.pools.poll_response(up, waiter) {
                    match event {
                        UpEvent::Data(data) => {
                            self.with_tunnel(ctx, now, key, |tunnel, ends, shared| {
                                tunnel.up_data(ends, &shared.clusters[tunnel.cluster], now, data);
                            });
                        }
                        // The upstream's END_STREAM: END_STREAM to the client (Envoy C7).
                        UpEvent::End => {
                            if let Some(Step::Done) =
                                self.with_tunnel(ctx, now, key, |t, ends, _| t.up_read_closed(ends))
                            {
                                return self.end_tunnel(ctx, now, key, true);
                            }
                        }
                        UpEvent::Head(..) => {}
                        UpEvent::Error | UpEvent::Refused => return self.lost_upstream(ctx, now, key),
                    }
                }
                Vec::new()
            }
            PoolEvent::UpstreamFlushed => {
                self.with_tunnel(ctx, now, key, |t, ends, _| t.flushed(ends, now, Side::Pooled(up, id)));
                Vec::new()
            }
            PoolEvent::UpstreamGone => self.lost_upstream(ctx, now, key),
            PoolEvent::Bound(_) | PoolEvent::Failed(_) => Vec::new(),
        }
    }

    /// The upstream's stream was reset or its connection lost: the client's stream is reset.
    fn lost_upstream(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        let closes = self.take_tunnel(ctx, now, key, true, Close::Abort);
        self.reset(ctx, key, Reason::CONNECT_ERROR);
        closes
    }
}
