//! The TCP proxy network filter: each downstream connection is relayed to an upstream of its
//! cluster, over a TCP connection of its own or, with `tunneling_config`, inside an HTTP
//! request (an HTTP/1.1 or HTTP/2 CONNECT, or a POST) through the cluster's pool.
//!
//! One [`Tunnel`] carries the bytes from the start: while the upstream is being reached it
//! holds what the client sends (reading paused past the buffer limit), and only a connected
//! socket or a 2xx releases it, in order; a failed attempt is retried up to
//! `max_connect_attempts` with the held bytes kept.

mod ends;
mod request;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::access_log;
use crate::codec::http1::response::UpEvent;
use crate::config::{TcpProxy, UpstreamProtocol};
use crate::downstream::conn::retire_connection;
use crate::downstream::ctx::Ctx;
use crate::format::Facts;
use crate::io::{ConnId, StreamRef};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::timers::Timer;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Step, Tunnel};
use crate::upstream::cluster::Pick;
use crate::upstream::pool::{Acquired, Failure, PoolEvent, PoolKey, Pools, Protocol, Released};
use ends::{Side, TcpEnds};
use request::TunnelRequest;
use smallvec::{smallvec, SmallVec};

/// A downstream connection of a TCP proxy listener.
pub(crate) struct TcpConn {
    id: ConnId,
    listener: usize,
    peer: SocketAddr,
    local: SocketAddr,
    accepted: Instant,
    cluster: usize,
    /// Upstream attempts made, the current one included; it also numbers the attempt's
    /// request in the pool, so an answer for an earlier attempt is recognised.
    attempts: u32,
    upstream: Upstream,
    /// `None` once the connection has ended.
    tunnel: Option<Tunnel<Side>>,
    armed: Option<Instant>,
    /// What the access log says of the connection.
    log: LogFacts,
}

/// What a TCP proxy's access log line is made of, beyond the connection's addresses.
#[derive(Default)]
struct LogFacts {
    /// Bytes read from the client, and written to it.
    received: u64,
    sent: u64,
    /// The upstream host of the last attempt.
    host: Option<SocketAddr>,
    /// Envoy's response flag for how it went wrong (`UF`, `UO`, `UH`, `DT`).
    flag: Option<&'static str>,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`: why the last attempt failed.
    failure: Option<String>,
}

/// What carries the bytes upstream.
enum Upstream {
    /// Nothing: between attempts, or ended.
    None,
    /// A TCP connection of the proxy's own, connecting or open.
    Raw(ConnId),
    /// The tunnel request, waiting for a pooled connection (`up`) or, sent, for its answer.
    Requesting { key: PoolKey, up: Option<ConnId> },
    /// An HTTP/1.1 CONNECT answered 2xx: the connection has left the pool and is raw.
    Detached(ConnId),
    /// A POST over HTTP/1.1 or any tunnel over HTTP/2, answered 2xx: the request's stream.
    Stream { key: PoolKey, up: ConnId },
}

/// How the connection ends, for its two sides.
#[derive(Clone, Copy)]
enum Ending {
    /// Both sides finished: flush both.
    Finished,
    /// The client reset: reset the upstream.
    DownstreamReset,
    /// The upstream reset (or its stream did): the client is reset after what it was sent.
    UpstreamReset,
    /// A limit ended it (idle, duration): flush both.
    Timeout,
}

impl TcpConn {
    pub(crate) fn new(
        ctx: &mut Ctx,
        now: Instant,
        (id, listener): (ConnId, usize),
        peer: SocketAddr,
        local: SocketAddr,
    ) -> (TcpConn, Closes) {
        ctx.shared.tcp(listener).downstream_cx_total.inc();
        let config = ctx.config.clone();
        let tcp = config.listeners[listener].tcp_proxy();
        let cluster = pick_cluster(ctx, tcp);
        let limits = (
            config.listeners[listener].per_connection_buffer_limit_bytes as usize,
            ctx.clusters.buffer_limit(cluster),
        );
        let tunnel =
            Tunnel::pending(now, (Side::Conn(id), Side::Unbound), cluster, now, limits, tcp.idle_timeout);
        let mut conn = TcpConn {
            id,
            listener,
            peer,
            local,
            accepted: now,
            cluster,
            attempts: 0,
            upstream: Upstream::None,
            tunnel: Some(tunnel),
            armed: None,
            log: LogFacts::default(),
        };
        let closes = conn.attempt(ctx, now);
        conn.rearm(ctx);
        (conn, closes)
    }

    /// Tries the cluster once more: a TCP connection, or the tunnel request through the pool.
    fn attempt(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.attempts += 1;
        let cluster = self.cluster;
        let addr = match ctx.clusters.pick(cluster, None, self.local) {
            Pick::Addr(addr) => addr,
            Pick::Resolve { .. } | Pick::NoHost => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.log.flag = Some("UH");
                return self.give_up(ctx, now);
            }
        };
        self.log.host = Some(addr);
        let config = ctx.config.clone();
        let tcp = config.listeners[self.listener].tcp_proxy();
        let stats = &ctx.shared.clusters[cluster];
        if tcp.tunneling.is_none() {
            if !ctx.shared.breakers[cluster].connections.try_acquire() {
                stats.upstream_cx_overflow.inc();
                self.log.flag = Some("UO");
                return self.give_up(ctx, now);
            }
            stats.upstream_cx_total.inc();
            stats.upstream_cx_active.inc();
            let up = ctx.connect(self.id, cluster, addr);
            let deadline = now + ctx.clusters.connect_timeout(cluster);
            self.tunnel_mut().retarget(Side::Conn(up), deadline);
            self.upstream = Upstream::Raw(up);
            return Vec::new();
        }
        let protocol = match config.clusters[cluster].protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2(_) => Protocol::Http2,
        };
        let key = PoolKey::plain(cluster, addr, protocol);
        // The pool has its own connect timeout; the answer is waited for as long as the
        // connection may be idle.
        let deadline = now + tcp.idle_timeout.unwrap_or(NO_ANSWER_LIMIT);
        self.tunnel_mut().retarget(Side::Unbound, deadline);
        self.upstream = Upstream::Requesting { key, up: None };
        let waiter = self.waiter();
        match ctx.with_pool(cluster, now, |p: &mut Pools, cx| p.acquire(key, waiter, cx)) {
            Acquired::Bound(up) => self.bound(ctx, now, up),
            Acquired::Pending => Vec::new(),
            Acquired::Overflow => {
                self.upstream = Upstream::None;
                self.log.flag = Some("UO");
                self.give_up(ctx, now)
            }
        }
    }

    /// A pooled connection carries this attempt's request: send its head.
    fn bound(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) -> Closes {
        let Upstream::Requesting { key, up: bound } = &mut self.upstream else {
            return ctx.give_back(up, self.waiter(), now);
        };
        *bound = Some(up);
        let key = *key;
        let config = ctx.config.clone();
        let tunneling =
            config.listeners[self.listener].tcp_proxy().tunneling.as_ref().expect("a tunnel request");
        let start = ctx.clock.wall(self.accepted);
        let facts = Facts {
            start: Some(start),
            downstream_local: Some(self.local),
            downstream_remote: Some(self.peer),
            hostname: ctx.shared.hostname.as_deref(),
            ..Facts::default()
        };
        let request = TunnelRequest::new(tunneling, &facts);
        let waiter = self.waiter();
        match key.protocol {
            Protocol::Http1 => {
                ctx.pools.expect_response(up, request.method.clone());
                let head = request.http1();
                ctx.shared.clusters[self.cluster].upstream_cx_tx_bytes_total.add(head.len() as u64);
                ctx.wire.write(up, head);
                Vec::new()
            }
            Protocol::Http2 => {
                let head = request.http2();
                if ctx.with_pool(self.cluster, now, |p: &mut Pools, cx| {
                    p.open_stream(up, waiter, head, false, cx)
                }) {
                    return Vec::new();
                }
                // The connection went away before the stream could open.
                self.upstream = Upstream::None;
                self.failed(ctx, now)
            }
        }
    }

    /// This attempt failed: try again, or give up once the attempts are spent.
    fn failed(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let max = ctx.config.listeners[self.listener].tcp_proxy().max_connect_attempts;
        if self.attempts < max {
            if matches!(self.tunnel_mut().upstream, Side::Unbound | Side::Stream(..)) {
                ctx.shared.clusters[self.cluster].upstream_rq_retry.inc();
            }
            return self.attempt(ctx, now);
        }
        if max > 1 {
            ctx.shared.clusters[self.cluster].upstream_cx_connect_attempts_exceeded.inc();
        }
        self.log.flag = Some("UF");
        self.give_up(ctx, now)
    }

    /// No upstream: the client is closed, reset if it sent bytes that never went anywhere
    /// (as Envoy's unread bytes make the kernel reset it), so it cannot take the close for a
    /// clean end.
    fn give_up(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let Some(tunnel) = self.tunnel.take() else { return Vec::new() };
        let close = if tunnel.held() > 0 { Close::Abort } else { Close::Flush };
        let mut closes = self.settle(ctx, now, Ending::Finished);
        closes.push((self.id, close));
        closes
    }

    /// The 2xx: the tunnel opens on whatever the protocol carries it on, and what the client
    /// sent meanwhile goes first.
    fn established(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) {
        let Upstream::Requesting { key, .. } = self.upstream else { return };
        let connect =
            ctx.config.listeners[self.listener].tcp_proxy().tunneling.as_ref().is_some_and(|t| !t.use_post);
        let mut first = Bytes::new();
        let side = match key.protocol {
            Protocol::Http1 if connect => {
                first = ctx.with_pool(self.cluster, now, |p: &mut Pools, cx| p.detach(up, cx));
                ctx.adopt_upstream(up, self.id, self.cluster);
                self.upstream = Upstream::Detached(up);
                Side::Conn(up)
            }
            Protocol::Http1 => {
                self.upstream = Upstream::Stream { key, up };
                Side::Chunked(up)
            }
            Protocol::Http2 => {
                self.upstream = Upstream::Stream { key, up };
                Side::Stream(up, self.attempts)
            }
        };
        self.with_tunnel(ctx, now, |tunnel, ends, shared| {
            let stats = &shared.clusters[tunnel.cluster];
            tunnel.retarget(side, now);
            tunnel.connected(ends, stats, now);
        });
        if !first.is_empty() {
            self.up_data(ctx, now, first);
        }
    }

    /// The tunnel request was answered with anything but a 2xx: counted under the status,
    /// logged, and the attempt has failed.
    fn refused(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId, status: u16) -> Closes {
        let prefix = &ctx.config.listeners[self.listener].tcp_proxy().stat_prefix;
        ctx.shared.stats.counter(&format!("tcp.{prefix}.tunnel_response_{status}")).inc();
        self.log.failure = Some(format!("tunnel_response:{status}"));
        tracing::warn!(
            listener = %ctx.config.listeners[self.listener].name,
            cluster = %ctx.config.clusters[self.cluster].name,
            status,
            "the upstream refused the tunnel"
        );
        let mut closes = self.drop_request(ctx, now, up);
        closes.extend(self.failed(ctx, now));
        closes
    }

    /// Gives up this attempt's request on `up`: an HTTP/1.1 connection is closed, an HTTP/2
    /// stream reset.
    fn drop_request(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) -> Closes {
        self.upstream = Upstream::None;
        let waiter = self.waiter();
        let close = ctx.with_pool(self.cluster, now, |p: &mut Pools, cx| p.abandon(up, waiter, cx));
        if close {
            vec![(up, Close::Abort)]
        } else {
            Vec::new()
        }
    }

    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let down = Side::Conn(self.id);
        let closes = match event {
            ConnEvent::Data(data) => {
                self.log.received += data.len() as u64;
                ctx.shared.tcp(self.listener).downstream_cx_rx_bytes_total.add(data.len() as u64);
                self.with_tunnel(ctx, now, |t, ends, shared| {
                    t.down_data(ends, &shared.clusters[t.cluster], now, data)
                });
                Vec::new()
            }
            ConnEvent::ReadClosed => {
                match self.with_tunnel(ctx, now, |t, ends, _| t.down_read_closed(ends)) {
                    Some(Step::Done) => self.end(ctx, now, Ending::Finished),
                    _ => Vec::new(),
                }
            }
            ConnEvent::Closed => self.end(ctx, now, Ending::DownstreamReset),
            ConnEvent::Flushed => {
                self.with_tunnel(ctx, now, |t, ends, _| t.flushed(ends, now, down));
                Vec::new()
            }
            ConnEvent::Connected | ConnEvent::ConnectFailed => Vec::new(),
        };
        self.rearm(ctx);
        closes
    }

    /// An event on the proxy's own upstream connection (plain TCP, or an answered HTTP/1.1
    /// CONNECT's).
    pub(crate) fn on_upstream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        up: ConnId,
        event: ConnEvent,
    ) -> Closes {
        if !matches!(self.upstream, Upstream::Raw(ours) | Upstream::Detached(ours) if ours == up) {
            return Vec::new();
        }
        let closes = match event {
            ConnEvent::Connected => {
                self.with_tunnel(ctx, now, |t, ends, shared| {
                    t.connected(ends, &shared.clusters[t.cluster], now)
                });
                Vec::new()
            }
            ConnEvent::ConnectFailed => {
                ctx.shared.clusters[self.cluster].upstream_cx_connect_fail.inc();
                self.log.failure = Some(failure_reason(Failure::ConnectFailed).to_string());
                self.retry_raw(ctx, now, up)
            }
            ConnEvent::Data(data) => {
                self.up_data(ctx, now, data);
                Vec::new()
            }
            ConnEvent::ReadClosed => self.up_read_closed(ctx, now),
            ConnEvent::Closed => self.end(ctx, now, Ending::UpstreamReset),
            ConnEvent::Flushed => {
                self.with_tunnel(ctx, now, |t, ends, _| t.flushed(ends, now, Side::Conn(up)));
                Vec::new()
            }
        };
        self.rearm(ctx);
        closes
    }

    /// The pool's word on this connection's tunnel request.
    pub(crate) fn on_pool(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        let current = stream == self.attempts
            && matches!(self.upstream, Upstream::Requesting { .. } | Upstream::Stream { .. });
        if !current {
            return match event {
                // Bound for an attempt given up: the connection goes back.
                PoolEvent::Bound(up) => ctx.give_back(up, StreamRef { conn: self.id, stream }, now),
                _ => Vec::new(),
            };
        }
        let closes = match event {
            PoolEvent::Bound(up) => self.bound(ctx, now, up),
            PoolEvent::Failed(failure) => {
                self.upstream = Upstream::None;
                self.log.failure = Some(failure_reason(failure).to_string());
                self.failed(ctx, now)
            }
            PoolEvent::Response(up) => self.on_response(ctx, now, up),
            PoolEvent::UpstreamFlushed => {
                let side = self.tunnel.as_ref().map(|t| t.upstream);
                if let Some(side) = side {
                    self.with_tunnel(ctx, now, |t, ends, _| t.flushed(ends, now, side));
                }
                Vec::new()
            }
            PoolEvent::UpstreamGone => self.upstream_gone(ctx, now),
        };
        self.rearm(ctx);
        closes
    }

    fn on_response(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) -> Closes {
        let waiter = self.waiter();
        while matches!(self.upstream, Upstream::Requesting { .. } | Upstream::Stream { .. }) {
            let Some(event) = ctx.pools.poll_response(up, waiter) else { break };
            match event {
                UpEvent::Head(head, _) if matches!(self.upstream, Upstream::Requesting { .. }) => {
                    let status = head.status;
                    ctx.shared.clusters[self.cluster].response(status);
                    ctx.upstream_status(self.cluster, status).inc();
                    if !(200..300).contains(&status) {
                        return self.refused(ctx, now, up, status);
                    }
                    self.established(ctx, now, up);
                }
                UpEvent::Head(..) => {}
                UpEvent::Data(data) => self.up_data(ctx, now, data),
                // The upstream's END_STREAM (or the POST response's end): a FIN to the client.
                UpEvent::End => return self.up_read_closed(ctx, now),
                UpEvent::Error | UpEvent::Refused => return self.upstream_gone(ctx, now),
            }
        }
        Vec::new()
    }

    /// The upstream's connection (or stream) is gone: before the answer that is a failed
    /// attempt; after it, the end of the tunnel.
    fn upstream_gone(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        match self.upstream {
            Upstream::Requesting { up, .. } => {
                let closes = match up {
                    Some(up) => self.drop_request(ctx, now, up),
                    None => Vec::new(),
                };
                self.upstream = Upstream::None;
                let mut closes = closes;
                closes.extend(self.failed(ctx, now));
                closes
            }
            _ => self.end(ctx, now, Ending::UpstreamReset),
        }
    }

    /// The proxy's own upstream connection failed to connect (or in time): it is retired and
    /// the attempt has failed.
    fn retry_raw(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) -> Closes {
        retire_connection(ctx, self.cluster, false);
        self.upstream = Upstream::None;
        let mut closes = vec![(up, Close::Abort)];
        closes.extend(self.failed(ctx, now));
        closes
    }

    fn up_data(&mut self, ctx: &mut Ctx, now: Instant, data: Bytes) {
        let sent = self
            .with_tunnel(ctx, now, |t, ends, shared| t.up_data(ends, &shared.clusters[t.cluster], now, data));
        self.log.sent += sent.unwrap_or(0);
        ctx.shared.tcp(self.listener).downstream_cx_tx_bytes_total.add(sent.unwrap_or(0));
    }

    fn up_read_closed(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        match self.with_tunnel(ctx, now, |t, ends, _| t.up_read_closed(ends)) {
            Some(Step::Done) => self.end(ctx, now, Ending::Finished),
            _ => Vec::new(),
        }
    }

    /// The connection is over: the upstream side is settled and both are closed.
    fn end(&mut self, ctx: &mut Ctx, now: Instant, ending: Ending) -> Closes {
        let Some(tunnel) = self.tunnel.take() else { return Vec::new() };
        let mut closes = self.settle(ctx, now, ending);
        let down = match ending {
            // Bytes the client sent that never went anywhere: it must not see a clean end.
            _ if tunnel.held() > 0 => Close::Abort,
            Ending::Finished | Ending::Timeout => Close::Flush,
            Ending::DownstreamReset => Close::Abort,
            Ending::UpstreamReset => Close::FlushThenReset,
        };
        closes.push((self.id, down));
        closes
    }

    /// Lets go of the upstream side: its connection closed, or its stream given back.
    fn settle(&mut self, ctx: &mut Ctx, now: Instant, ending: Ending) -> Closes {
        let (remote, close) = match ending {
            Ending::Finished | Ending::Timeout => (false, Close::Flush),
            Ending::DownstreamReset => (false, Close::Abort),
            Ending::UpstreamReset => (true, Close::Abort),
        };
        let waiter = self.waiter();
        let cluster = self.cluster;
        let up = match std::mem::replace(&mut self.upstream, Upstream::None) {
            Upstream::None => return Vec::new(),
            Upstream::Raw(up) => {
                retire_connection(ctx, cluster, remote);
                up
            }
            Upstream::Detached(up) => {
                ctx.with_pool(cluster, now, |p: &mut Pools, cx| p.closed(up, remote, cx));
                up
            }
            Upstream::Requesting { key, up: None } => {
                ctx.with_pool(cluster, now, |p: &mut Pools, cx| p.cancel(key, waiter, cx));
                return Vec::new();
            }
            Upstream::Requesting { up: Some(up), .. } => return self.drop_request(ctx, now, up),
            Upstream::Stream { key, up }
                if key.protocol == Protocol::Http2 && matches!(ending, Ending::Finished) =>
            {
                // Both ends finished: the stream is done and the connection goes on.
                let released =
                    ctx.with_pool(cluster, now, |p: &mut Pools, cx| p.release(up, waiter, true, cx));
                return match released {
                    Released::Rebound { waiter } => {
                        ctx.defer(waiter, PoolEvent::Bound(up));
                        Vec::new()
                    }
                    Released::Idle => Vec::new(),
                    Released::Close => vec![(up, Close::Flush)],
                };
            }
            Upstream::Stream { up, .. } => return self.drop_request(ctx, now, up),
        };
        if close == Close::Flush && ctx.wire.queued(up) > 0 {
            ctx.shared.tcp(self.listener).upstream_flush_total.inc();
        }
        vec![(up, close)]
    }

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.armed = None;
        let Some(tunnel) = &self.tunnel else { return Vec::new() };
        let stats = ctx.shared.tcp(self.listener);
        let max = ctx.config.listeners[self.listener].tcp_proxy().max_downstream_connection_duration;
        let closes = if max.is_some_and(|max| self.accepted + max <= now) {
            stats.max_downstream_connection_duration.inc();
            self.log.flag = Some("DT");
            self.end(ctx, now, Ending::Timeout)
        } else if tunnel.idle_expired(now) {
            stats.idle_timeout.inc();
            self.end(ctx, now, Ending::Timeout)
        } else if tunnel.connect_expired(now) {
            match self.upstream {
                Upstream::Raw(up) => {
                    ctx.shared.clusters[self.cluster].upstream_cx_connect_timeout.inc();
                    self.log.failure = Some(failure_reason(Failure::ConnectTimeout).to_string());
                    self.retry_raw(ctx, now, up)
                }
                // The tunnel request went unanswered for the whole idle timeout.
                _ => {
                    stats.idle_timeout.inc();
                    self.give_up(ctx, now)
                }
            }
        } else {
            Vec::new()
        };
        self.rearm(ctx);
        closes
    }

    fn rearm(&mut self, ctx: &mut Ctx) {
        let Some(tunnel) = &self.tunnel else { return };
        let max = ctx.config.listeners[self.listener].tcp_proxy().max_downstream_connection_duration;
        let next = match (tunnel.deadline(), max.map(|max| self.accepted + max)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                ctx.timers.set(at, Timer::Http(self.id));
            }
        }
    }

    pub(crate) fn socket_gauges(&self, shared: &Shared) -> SmallVec<[Gauge; 3]> {
        smallvec![shared.listeners[self.listener].downstream_cx_active.clone()]
    }

    /// The connection is gone: settle the upstream side; returns what to close.
    pub(crate) fn finish(mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        ctx.shared.listeners[self.listener].downstream_cx_active.dec();
        let closes = match self.tunnel.take() {
            Some(_) => self.settle(ctx, now, Ending::DownstreamReset),
            None => Vec::new(),
        };
        self.write_log(ctx, now);
        closes
    }

    /// The connection's access log lines, once it is over.
    fn write_log(&self, ctx: &mut Ctx, now: Instant) {
        let config = ctx.config.clone();
        let logs = &config.listeners[self.listener].tcp_proxy().access_log;
        if logs.is_empty() {
            return;
        }
        let facts = Facts {
            start: Some(ctx.clock.wall(self.accepted)),
            duration: Some(now.saturating_duration_since(self.accepted)),
            downstream_local: Some(self.local),
            downstream_remote: Some(self.peer),
            hostname: ctx.shared.hostname.as_deref(),
            response_code: Some(0),
            response_flags: self.log.flag.unwrap_or(""),
            bytes_received: self.log.received,
            bytes_sent: self.log.sent,
            upstream_host: self.log.host,
            upstream_cluster: Some(&config.clusters[self.cluster].name),
            upstream_transport_failure_reason: self.log.failure.as_deref(),
            ..Facts::default()
        };
        access_log::emit(&mut ctx.wire, logs, &facts);
    }

    fn waiter(&self) -> StreamRef {
        StreamRef { conn: self.id, stream: self.attempts }
    }

    fn tunnel_mut(&mut self) -> &mut Tunnel<Side> {
        self.tunnel.as_mut().expect("an open connection has its tunnel")
    }

    /// Runs `f` on the tunnel with its ends at hand, if the connection is still open.
    fn with_tunnel<T>(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        f: impl FnOnce(&mut Tunnel<Side>, &mut TcpEnds<'_>, &Shared) -> T,
    ) -> Option<T> {
        let tunnel = self.tunnel.as_mut()?;
        let shared = ctx.shared.clone();
        let mut ends = TcpEnds { ctx, down: self.id, listener: self.listener, cluster: self.cluster, now };
        Some(f(tunnel, &mut ends, &shared))
    }
}

/// How long a tunnel request may go unanswered when the TCP proxy has no idle timeout.
const NO_ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `%UPSTREAM_TRANSPORT_FAILURE_REASON%` for a failed connection attempt.
fn failure_reason(failure: Failure) -> &'static str {
    match failure {
        Failure::ConnectFailed => "connection_failure",
        Failure::ConnectTimeout => "connection_timeout",
    }
}

/// One of the filter's clusters, by weight.
fn pick_cluster(ctx: &mut Ctx, tcp: &TcpProxy) -> usize {
    if let [only] = tcp.clusters.as_slice() {
        return only.cluster;
    }
    let total: u64 = tcp.clusters.iter().map(|c| u64::from(c.weight)).sum();
    let mut at = (ctx.random() % u128::from(total)) as u64;
    for c in &tcp.clusters {
        if at < u64::from(c.weight) {
            return c.cluster;
        }
        at -= u64::from(c.weight);
    }
    unreachable!("the weights add up to the total")
}
