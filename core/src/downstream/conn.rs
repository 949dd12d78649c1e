//! A downstream HTTP connection of a connection manager: routing, upgrade negotiation, local
//! replies, keep-alive, and the switch to a tunnel. Its [`Client`] holds the codec that reads
//! the requests and frames what goes back. A request forwarded upstream is a [`Stream`], a
//! machine of its own: the connection feeds it events and acts on the [`Ended`] it returns.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::http1::response::UpEvent;
use crate::codec::http1::{self, BodyKind, HeadError, Method, RequestHead};
use crate::codec::LocalReply;
use crate::config::RouteAction;
use crate::downstream::client::Client;
use crate::downstream::ctx::Ctx;
use crate::downstream::local_reply;
use crate::downstream::route::{self, RouteRequest};
use crate::downstream::router::{End, Ended, Stream};
use crate::downstream::upgrade::{upgrade_allowed, upgrade_token};
use crate::io::{ConnId, QueryId, StreamRef};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::timers::Timer;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Step, Tunnel};
use crate::upstream::cluster::Pick;
use crate::upstream::pool::{PoolEvent, Pools};
use smallvec::{smallvec, SmallVec};

pub(crate) struct HttpConn {
    client: Client,
    local: SocketAddr,
    pub(crate) state: State,
    /// This connection is counted in `downstream_cx_upgrades_active`.
    upgraded: bool,
    /// A request is in flight (counted in `downstream_rq_active`).
    in_request: bool,
    /// When the connection last carried a request (for the connection idle timeout), or
    /// bytes of a head (for the stream idle timeout), or went back to reading heads.
    pub(crate) last_activity: Instant,
    /// The earliest deadline this connection has in the timer table.
    armed: Option<Instant>,
    /// Requests started on this connection: the next one's stream number.
    streams: u32,
}

/// How a tunnel came to its end.
pub(crate) enum TunnelEnd {
    /// Both sides finished, or a timeout ended it.
    Finished,
    DownstreamReset,
    /// The upstream closed its side and the tunnel ends with it.
    UpstreamClosed,
    UpstreamReset,
}

pub(crate) enum State {
    /// Between requests, or reading a request head.
    Head,
    /// A CONNECT waits for its target's name to resolve; early bytes wait with it.
    Resolving { query: QueryId, cluster: usize, port: u16, early: Vec<Bytes>, fin: bool, deadline: Instant },
    /// A request being proxied to an upstream.
    Proxying(Box<Stream>),
    /// A terminated CONNECT or an upgraded request: raw bytes both ways.
    Tunnel(Tunnel),
    /// A final response is queued; the connection closes once it is flushed.
    Closing,
}

impl HttpConn {
    pub(crate) fn new(
        ctx: &mut Ctx,
        now: Instant,
        id: ConnId,
        listener: usize,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> HttpConn {
        let client = Client::http1(&ctx.config, id, listener, peer);
        let stats = &ctx.shared.http[listener];
        stats.downstream_cx_total.inc();
        stats.downstream_cx_active.inc();
        stats.downstream_cx_http1_total.inc();
        stats.downstream_cx_http1_active.inc();
        ctx.shared.listeners[listener].downstream_cx_total.inc();
        ctx.shared.listeners[listener].downstream_cx_active.inc();
        let mut conn = HttpConn {
            client,
            local,
            state: State::Head,
            upgraded: false,
            in_request: false,
            last_activity: now,
            armed: None,
            streams: 0,
        };
        conn.rearm(ctx);
        conn
    }

    /// The gauges that count this connection's socket as active (settled by [`Self::finish`],
    /// counted again by the proxy while the socket flushes before its close).
    pub(crate) fn socket_gauges(&self, shared: &Shared) -> SmallVec<[Gauge; 3]> {
        let http = &shared.http[self.client.listener];
        smallvec![
            http.downstream_cx_active.clone(),
            http.downstream_cx_http1_active.clone(),
            shared.listeners[self.client.listener].downstream_cx_active.clone(),
        ]
    }

    /// Numbers a new stream of this connection.
    pub(crate) fn next_stream(&mut self) -> u32 {
        self.streams = self.streams.wrapping_add(1);
        self.streams
    }

    /// Between requests with nothing read ahead: closing it loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.client.codec.is_empty()
    }

    /// An event on the downstream connection itself.
    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let closes = match event {
            ConnEvent::Data(data) => {
                ctx.shared.http[self.client.listener].downstream_cx_rx_bytes_total.add(data.len() as u64);
                self.on_data(ctx, now, data)
            }
            ConnEvent::ReadClosed => match &mut self.state {
                State::Tunnel(tunnel) => match tunnel.down_read_closed(&mut ctx.wire) {
                    Step::Done => self.end_tunnel(ctx, now, TunnelEnd::Finished),
                    Step::Continue => Vec::new(),
                },
                State::Resolving { fin, .. } => {
                    *fin = true;
                    Vec::new()
                }
                State::Proxying(_) => self.with_stream(ctx, now, |s, _, ctx| s.down_closed(ctx, now, false)),
                // A client that half-closes between requests is done with the connection.
                State::Head | State::Closing => self.close(Close::Flush),
            },
            ConnEvent::Closed => {
                ctx.shared.http[self.client.listener].downstream_cx_destroy_remote.inc();
                match &self.state {
                    State::Tunnel(_) => self.end_tunnel(ctx, now, TunnelEnd::DownstreamReset),
                    State::Proxying(_) => {
                        self.with_stream(ctx, now, |s, _, ctx| s.down_closed(ctx, now, true))
                    }
                    _ => self.close(Close::Abort),
                }
            }
            ConnEvent::Flushed => {
                match &mut self.state {
                    State::Tunnel(tunnel) => tunnel.flushed(&mut ctx.wire, now, self.client.id),
                    State::Proxying(stream) => stream.down_flushed(&self.client, ctx),
                    State::Head if ctx.wire.queued(self.client.id) <= self.client.buffer_limit / 2 => {
                        // Replies were backed up: read (and answer) again. A head held up
                        // meanwhile is timed from now: the wait was ours, not the client's.
                        if ctx.wire.read_paused(self.client.id) {
                            self.last_activity = now;
                        }
                        ctx.wire.resume_read(self.client.id);
                        let closes = self.next_request(ctx, now);
                        self.rearm(ctx);
                        return closes;
                    }
                    _ => {}
                }
                Vec::new()
            }
            ConnEvent::Connected | ConnEvent::ConnectFailed => Vec::new(),
        };
        self.rearm(ctx);
        closes
    }

    /// An event on a terminated CONNECT's or an upgrade's upstream connection.
    pub(crate) fn on_upstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let State::Tunnel(tunnel) = &mut self.state else { return Vec::new() };
        let up = tunnel.upstream;
        let closes = match event {
            ConnEvent::Connected => {
                let date = ctx.clock.date(now);
                let reply = self.client.codec.encode_reply(&local_reply::connect_established(), &date, false);
                self.client.send(ctx, 200, reply);
                let State::Tunnel(tunnel) = &mut self.state else { unreachable!() };
                tunnel.connected(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now);
                Vec::new()
            }
            ConnEvent::ConnectFailed => {
                ctx.shared.clusters[tunnel.cluster].upstream_cx_connect_fail.inc();
                self.connect_failed(ctx, now, local_reply::CONNECT_FAILURE)
            }
            ConnEvent::Data(data) => {
                let len = tunnel.up_data(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now, data);
                ctx.shared.http[self.client.listener].downstream_cx_tx_bytes_total.add(len);
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

    /// An event from the HTTP pool about this connection's request.
    pub(crate) fn on_pool(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        let closes = self.pool_event(ctx, now, stream, event);
        self.rearm(ctx);
        closes
    }

    fn pool_event(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        if !matches!(&self.state, State::Proxying(s) if s.id.stream == stream) {
            return match event {
                // Bound to a request that has gone: hand the connection back.
                PoolEvent::Bound(up) => ctx.give_back(up, now),
                _ => Vec::new(),
            };
        }
        let events = match event {
            PoolEvent::Response(events) => events,
            event => return self.with_stream(ctx, now, |s, client, ctx| s.on_pool(client, ctx, now, event)),
        };
        let mut closes = Vec::new();
        for event in events {
            match &mut self.state {
                State::Proxying(_) => closes.extend(
                    self.with_stream(ctx, now, |s, client, ctx| s.on_response(client, ctx, now, event)),
                ),
                // Upgraded: what followed the `101` belongs to the tunnel.
                State::Tunnel(tunnel) => {
                    if let UpEvent::Upgraded(rest) | UpEvent::Data(rest) = event {
                        if !rest.is_empty() {
                            let stats = &ctx.shared.clusters[tunnel.cluster];
                            tunnel.up_data(&mut ctx.wire, stats, now, rest);
                        }
                    }
                }
                _ => {}
            }
        }
        closes
    }

    /// Runs `f` on the stream in progress, and acts on its end if it ended.
    fn with_stream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        f: impl FnOnce(&mut Stream, &mut Client, &mut Ctx) -> Option<Ended>,
    ) -> Closes {
        let State::Proxying(stream) = &mut self.state else { return Vec::new() };
        match f(stream, &mut self.client, ctx) {
            Some(ended) => self.stream_ended(ctx, now, ended),
            None => Vec::new(),
        }
    }

    /// The stream in progress ended: answer in its place, read the next request, become a
    /// tunnel, or close, as it says.
    fn stream_ended(&mut self, ctx: &mut Ctx, now: Instant, ended: Ended) -> Closes {
        self.state = State::Head;
        let mut closes = Vec::new();
        match ended.end {
            End::Reply { reply, close } => {
                closes.extend(ended.up);
                closes.extend(self.local(ctx, now, &reply, close));
                if closes.iter().all(|(id, _)| *id != self.client.id) {
                    closes.extend(self.resume_after_stream(ctx, now));
                }
            }
            End::Complete { close } => {
                closes.extend(ended.up);
                self.end_request(ctx);
                closes.extend(if close {
                    self.close(Close::Flush)
                } else {
                    self.resume_after_stream(ctx, now)
                });
            }
            End::Cut(kind) => {
                closes.extend(self.close(kind));
                closes.extend(ended.up);
            }
            End::Upgraded(tunnel) => self.state = State::Tunnel(tunnel),
        }
        closes
    }

    /// Between requests again: read on, and answer what was read ahead. The next request's
    /// stream starts now (as in Envoy, a pipelined request waits for the one before it), and
    /// so do its stream idle timeout and the connection idle timeout.
    fn resume_after_stream(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.last_activity = now;
        ctx.wire.resume_read(self.client.id);
        self.next_request(ctx, now)
    }

    fn on_data(&mut self, ctx: &mut Ctx, now: Instant, data: Bytes) -> Closes {
        match &mut self.state {
            State::Tunnel(tunnel) => {
                tunnel.down_data(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now, data);
                Vec::new()
            }
            State::Resolving { early, .. } => {
                early.push(data);
                if early.iter().map(Bytes::len).sum::<usize>() >= self.client.buffer_limit {
                    ctx.wire.pause_read(self.client.id);
                }
                Vec::new()
            }
            State::Proxying(_) => {
                self.with_stream(ctx, now, |s, client, ctx| s.down_data(client, ctx, now, data))
            }
            State::Closing => Vec::new(),
            State::Head => {
                // Bytes of a head keep the stream idle timeout from firing.
                self.last_activity = now;
                self.client.codec.read_ahead(&data);
                self.next_request(ctx, now)
            }
        }
    }

    /// Parses and answers requests while whole heads are buffered.
    pub(crate) fn next_request(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        while matches!(self.state, State::Head) && !self.client.codec.is_empty() {
            // A client that sends requests without reading the answers waits until it reads:
            // answers queue only up to the buffer limit.
            if ctx.wire.queued(self.client.id) > self.client.buffer_limit {
                ctx.wire.pause_read(self.client.id);
                return Vec::new();
            }
            let (head, body) = match self.client.codec.next_head(now) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Vec::new(),
                Err(error) => return self.protocol_error(ctx, now, error),
            };
            self.last_activity = now;
            let stats = &ctx.shared.http[self.client.listener];
            stats.downstream_rq_total.inc();
            stats.downstream_rq_http1_total.inc();
            stats.downstream_rq_active.inc();
            self.in_request = true;
            let body = match body {
                Ok(body) => body,
                Err(error) => return self.protocol_error(ctx, now, error),
            };
            let closes = if head.method == Method::Connect {
                self.on_connect(ctx, now, &head)
            } else {
                self.on_request(ctx, now, head, body)
            };
            if !closes.is_empty() {
                return closes;
            }
        }
        Vec::new()
    }

    /// A request other than CONNECT: routed, checked against the upgrade table, then
    /// answered locally or forwarded.
    fn on_request(&mut self, ctx: &mut Ctx, now: Instant, mut head: RequestHead, body: BodyKind) -> Closes {
        if head.headers.get("host").is_none_or(|h| h.is_empty()) {
            return self.reply(ctx, now, 400, "missing required header: host", true);
        }
        // `Upgrade: h2c` is dropped and the request goes on as plain HTTP/1.1 (Envoy U10).
        if upgrade_token(&head).is_some_and(|t| t.eq_ignore_ascii_case(b"h2c")) {
            head.headers.remove("upgrade");
            head.headers.remove("http2-settings");
            if head.headers.contains_token("connection", "upgrade") {
                head.headers.remove("connection");
            }
        }
        let upgrade = upgrade_token(&head).map(<[u8]>::to_vec);
        let keep_alive = head.keep_alive() && upgrade.is_none();
        let config = ctx.config.clone();
        let hcm = self.client.hcm(&config);
        let index = {
            let host = head.headers.get("host").unwrap_or_default();
            let header = |name: &str| head.headers.get(name);
            let request = RouteRequest {
                method: head.method.as_str(),
                authority: host,
                path: Some(&head.target),
                header: &header,
            };
            route::select_index(&hcm.route_config, &request)
        };
        let route = index.map(|i| i.get(&hcm.route_config));
        if let Some(token) = &upgrade {
            let route_upgrades = route.and_then(|r| r.action.target()).map(|t| t.upgrade_configs.as_slice());
            if !upgrade_allowed(hcm, route_upgrades, token) {
                ctx.shared.http[self.client.listener].downstream_rq_ws_on_non_ws_route.inc();
                return self.reply(ctx, now, 403, "", true);
            }
            self.count_upgrade(ctx);
        }
        // A local answer before the body was read ends the connection: the body would
        // otherwise be taken for the next request.
        let reusable = keep_alive && body == BodyKind::Empty && !ctx.draining();
        let (Some(index), Some(route)) = (index, route) else {
            return self.reply(ctx, now, 404, "", !reusable);
        };
        let target = match &route.action {
            RouteAction::DirectResponse { status, body } => {
                return self.reply(ctx, now, *status, body.as_deref().unwrap_or(""), !reusable);
            }
            RouteAction::Route(target) => target,
        };
        let cluster = target.cluster;
        let original = ctx.clusters.original_dst_header(cluster).and_then(|name| head.headers.get(name));
        let addr = match ctx.clusters.pick(cluster, original, self.local) {
            Pick::Addr(addr) => addr,
            // Envoy's original destination takes IP literals only for proxied requests.
            Pick::Resolve { .. } | Pick::NoHost => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                return self.reply(ctx, now, 503, local_reply::NO_HEALTHY_UPSTREAM, !reusable);
            }
        };
        let id = StreamRef { conn: self.client.id, stream: self.next_stream() };
        let (stream, ended) = Stream::start(
            &mut self.client,
            ctx,
            now,
            id,
            head,
            body,
            index,
            addr,
            upgrade.is_some(),
            keep_alive,
        );
        self.state = State::Proxying(stream);
        match ended {
            Some(ended) => self.stream_ended(ctx, now, ended),
            None => Vec::new(),
        }
    }

    fn on_connect(&mut self, ctx: &mut Ctx, now: Instant, head: &RequestHead) -> Closes {
        let config = ctx.config.clone();
        let hcm = self.client.hcm(&config);
        let authority: &[u8] = head.target.as_ref();
        let header = |name: &str| head.headers.get(name);
        let request = RouteRequest { method: "CONNECT", authority, path: None, header: &header };
        let route = route::select(&hcm.route_config, &request);
        let target = route.and_then(|r| r.action.target());
        if !upgrade_allowed(hcm, target.map(|t| t.upgrade_configs.as_slice()), b"CONNECT") {
            ctx.shared.http[self.client.listener].downstream_rq_ws_on_non_ws_route.inc();
            return self.reply(ctx, now, 403, "", true);
        }
        self.count_upgrade(ctx);
        let Some(target) = target else {
            return self.reply(ctx, now, 404, "", true);
        };
        let terminate = target.upgrade_configs.iter().any(|u| {
            u.upgrade_type.eq_ignore_ascii_case("CONNECT") && u.enabled && u.connect_config.is_some()
        });
        if !terminate {
            tracing::warn!(
                "CONNECT proxy mode (a CONNECT route without connect_config) is not implemented yet"
            );
            return self.reply(ctx, now, 501, "burrow: CONNECT proxy mode is not implemented yet", true);
        }
        let cluster = target.cluster;
        let original = ctx.clusters.original_dst_header(cluster).map(|name| match name {
            ":authority" | "host" => authority,
            name => head.headers.get(name).unwrap_or_default(),
        });
        // Bytes that came with the head belong to the tunnel.
        let early: Vec<Bytes> =
            if self.client.codec.is_empty() { Vec::new() } else { vec![self.client.codec.take_buffered()] };
        match ctx.clusters.pick(cluster, original, self.local) {
            Pick::Addr(addr) => self.open_tunnel(ctx, now, cluster, addr, early, false),
            Pick::Resolve { host, port } => {
                let (query, resolve) = ctx.clusters.resolve_for(self.client.id, cluster, host);
                ctx.wire.push(resolve);
                let deadline = now + ctx.clusters.connect_timeout(cluster);
                // What came with the head counts against the limit, as later reads do.
                if early.iter().map(Bytes::len).sum::<usize>() >= self.client.buffer_limit {
                    ctx.wire.pause_read(self.client.id);
                }
                self.state = State::Resolving { query, cluster, port, early, fin: false, deadline };
                Vec::new()
            }
            Pick::NoHost => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.reply(ctx, now, 503, local_reply::NO_HEALTHY_UPSTREAM, true)
            }
        }
    }

    fn count_upgrade(&mut self, ctx: &mut Ctx) {
        let stats = &ctx.shared.http[self.client.listener];
        stats.downstream_cx_upgrades_total.inc();
        stats.downstream_cx_upgrades_active.inc();
        self.upgraded = true;
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
        if !matches!(&self.state, State::Resolving { query: ours, .. } if *ours == query) {
            return Vec::new();
        }
        let closes = self.resolved(ctx, now, addrs);
        self.rearm(ctx);
        closes
    }

    fn resolved(&mut self, ctx: &mut Ctx, now: Instant, addrs: Vec<IpAddr>) -> Closes {
        let State::Resolving { cluster, port, early, fin, .. } =
            std::mem::replace(&mut self.state, State::Head)
        else {
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
        self.state = State::Tunnel(tunnel);
        Vec::new()
    }

    fn connect_failed(&mut self, ctx: &mut Ctx, now: Instant, body: &str) -> Closes {
        let State::Tunnel(tunnel) = std::mem::replace(&mut self.state, State::Head) else {
            return Vec::new();
        };
        retire_connect_tunnel(ctx, &tunnel, false);
        let mut closes = self.reply(ctx, now, 503, body, true);
        closes.push((tunnel.upstream, Close::Abort));
        closes
    }

    /// The tunnel is over: close both connections. `ended_by` says which side ended it.
    pub(crate) fn end_tunnel(&mut self, ctx: &mut Ctx, now: Instant, ended_by: TunnelEnd) -> Closes {
        let State::Tunnel(tunnel) = std::mem::replace(&mut self.state, State::Closing) else {
            return Vec::new();
        };
        let remote = matches!(ended_by, TunnelEnd::UpstreamClosed | TunnelEnd::UpstreamReset);
        if tunnel.pooled {
            let up = tunnel.upstream;
            ctx.with_pool(tunnel.cluster, now, |pools: &mut Pools, cx| pools.closed(up, remote, cx));
        } else {
            retire_connect_tunnel(ctx, &tunnel, remote);
        }
        let (down, up) = match ended_by {
            // A reset reaches the other end as a reset, after what was already sent to it.
            TunnelEnd::DownstreamReset => (Close::Abort, Close::FlushThenReset),
            TunnelEnd::UpstreamReset => (Close::FlushThenReset, Close::Abort),
            TunnelEnd::Finished | TunnelEnd::UpstreamClosed => (Close::Flush, Close::Flush),
        };
        vec![(self.client.id, down), (tunnel.upstream, up)]
    }

    fn protocol_error(&mut self, ctx: &mut Ctx, now: Instant, error: HeadError) -> Closes {
        tracing::debug!(details = error.details(), "downstream protocol error");
        ctx.shared.http[self.client.listener].downstream_cx_protocol_error.inc();
        self.client.codec.clear();
        let body = http1::reason_phrase(error.status());
        self.reply(ctx, now, error.status(), body, true)
    }

    /// Sends a local reply; with `close` the connection ends once it is written.
    pub(crate) fn reply(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        status: u16,
        body: &str,
        close: bool,
    ) -> Closes {
        self.local(ctx, now, &local_reply::text(status, body), close)
    }

    /// Envoy's 503 for a request a circuit breaker refused.
    pub(crate) fn overloaded(&mut self, ctx: &mut Ctx, now: Instant, close: bool) -> Closes {
        self.local(ctx, now, &local_reply::overloaded(), close)
    }

    /// Writes a reply of the proxy's own, ends the request, and closes the connection if asked
    /// (or when draining). Pipelined requests already read are taken up by the caller's loop.
    fn local(&mut self, ctx: &mut Ctx, now: Instant, reply: &LocalReply<'_>, close: bool) -> Closes {
        let close = close || ctx.draining();
        let date = ctx.clock.date(now);
        let bytes = self.client.codec.encode_reply(reply, &date, close);
        self.client.send(ctx, reply.status, bytes);
        self.end_request(ctx);
        if close {
            ctx.shared.http[self.client.listener].downstream_cx_destroy_local.inc();
            return self.close(Close::Flush);
        }
        self.state = State::Head;
        Vec::new()
    }

    pub(crate) fn end_request(&mut self, ctx: &mut Ctx) {
        if std::mem::take(&mut self.in_request) {
            let stats = &ctx.shared.http[self.client.listener];
            stats.downstream_rq_active.dec();
            stats.downstream_rq_completed.inc();
        }
        if std::mem::take(&mut self.upgraded) {
            ctx.shared.http[self.client.listener].downstream_cx_upgrades_active.dec();
        }
    }

    pub(crate) fn close(&mut self, kind: Close) -> Closes {
        self.state = State::Closing;
        vec![(self.client.id, kind)]
    }

    /// The connection is gone: settle its gauges; returns the upstream connection it still
    /// held, for the proxy to close.
    pub(crate) fn finish(mut self: Box<Self>, ctx: &mut Ctx, now: Instant) -> Closes {
        self.end_request(ctx);
        let stats = &ctx.shared.http[self.client.listener];
        stats.downstream_cx_active.dec();
        stats.downstream_cx_http1_active.dec();
        ctx.shared.listeners[self.client.listener].downstream_cx_active.dec();
        let up = match std::mem::replace(&mut self.state, State::Closing) {
            State::Tunnel(tunnel) if tunnel.pooled => {
                let up = tunnel.upstream;
                ctx.with_pool(tunnel.cluster, now, |pools: &mut Pools, cx| pools.closed(up, false, cx));
                Some(up)
            }
            State::Tunnel(tunnel) => {
                retire_connect_tunnel(ctx, &tunnel, false);
                Some(tunnel.upstream)
            }
            State::Proxying(mut stream) => stream.abandon(ctx, now),
            _ => None,
        };
        up.map(|up| (up, Close::Abort)).into_iter().collect()
    }

    /// A timer of this connection fired: act on whatever is due.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.armed = None;
        let closes = self.expire(ctx, now);
        self.rearm(ctx);
        closes
    }

    fn expire(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        match &self.state {
            State::Tunnel(t) if t.connect_expired(now) => {
                ctx.shared.clusters[t.cluster].upstream_cx_connect_timeout.inc();
                ctx.shared.clusters[t.cluster].upstream_cx_connect_fail.inc();
                self.connect_failed(ctx, now, local_reply::CONNECT_TIMEOUT)
            }
            State::Tunnel(t) if t.idle_expired(now) => {
                ctx.shared.http[self.client.listener].downstream_rq_idle_timeout.inc();
                self.end_tunnel(ctx, now, TunnelEnd::Finished)
            }
            State::Resolving { cluster, deadline, .. } if *deadline <= now => {
                ctx.shared.clusters[*cluster].upstream_cx_connect_timeout.inc();
                self.reply(ctx, now, 503, local_reply::CONNECT_TIMEOUT, true)
            }
            State::Proxying(_) => self.with_stream(ctx, now, |s, client, ctx| s.on_timer(client, ctx, now)),
            State::Head if self.headers_deadline(ctx).is_some_and(|at| at <= now) => {
                ctx.shared.http[self.client.listener].downstream_rq_header_timeout.inc();
                self.client.codec.clear();
                self.reply(ctx, now, 408, "request header timeout", true)
            }
            State::Head if self.idle_deadline(ctx).is_some_and(|at| at <= now) => {
                if self.client.codec.is_empty() {
                    ctx.shared.http[self.client.listener].downstream_cx_idle_timeout.inc();
                    return self.close(Close::Flush);
                }
                // A head that stopped arriving: Envoy's stream idle timeout answer.
                ctx.shared.http[self.client.listener].downstream_rq_idle_timeout.inc();
                self.client.codec.clear();
                self.reply(ctx, now, 408, "stream timeout", true)
            }
            _ => Vec::new(),
        }
    }

    /// Between requests the connection idle timeout runs; while a request head is arriving,
    /// the stream idle timeout (Envoy starts a stream at its first byte).
    fn idle_deadline(&self, ctx: &Ctx) -> Option<Instant> {
        if !matches!(self.state, State::Head) {
            return None;
        }
        if !self.client.codec.is_empty() && ctx.wire.read_paused(self.client.id) {
            // The next head waits on us (the client has not read its answers), not on the
            // client.
            return None;
        }
        let hcm = self.client.hcm(&ctx.config);
        let idle: Option<Duration> =
            if self.client.codec.is_empty() { hcm.idle_timeout } else { hcm.stream_idle_timeout };
        idle.map(|idle| self.last_activity + idle)
    }

    /// `request_headers_timeout`: while a request head is arriving, when it must be complete.
    fn headers_deadline(&self, ctx: &Ctx) -> Option<Instant> {
        let timeout = self.client.hcm(&ctx.config).request_headers_timeout?;
        if !matches!(self.state, State::Head) || self.client.codec.is_empty() {
            return None;
        }
        if ctx.wire.queued(self.client.id) > self.client.buffer_limit {
            // Not being read: the head waits on us, as for the idle timeout.
            return None;
        }
        self.client.codec.head_started().map(|started| started + timeout)
    }

    /// Makes sure the timer table holds this connection's next deadline.
    fn rearm(&mut self, ctx: &mut Ctx) {
        let next = match &self.state {
            State::Head => match (self.idle_deadline(ctx), self.headers_deadline(ctx)) {
                (Some(idle), Some(headers)) => Some(idle.min(headers)),
                (idle, headers) => idle.or(headers),
            },
            State::Resolving { deadline, .. } => Some(*deadline),
            State::Tunnel(tunnel) => tunnel.deadline(),
            State::Proxying(stream) => stream.deadline(),
            State::Closing => None,
        };
        if let Some(at) = next {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                ctx.timers.set(at, Timer::Http(self.client.id));
            }
        }
    }
}

/// Settles a terminated CONNECT's upstream connection: gauges, counters and its breaker unit.
fn retire_connect_tunnel(ctx: &Ctx, tunnel: &Tunnel, remote: bool) {
    let stats = &ctx.shared.clusters[tunnel.cluster];
    stats.upstream_cx_active.dec();
    stats.upstream_cx_destroy.inc();
    if remote {
        stats.upstream_cx_destroy_remote.inc();
    } else {
        stats.upstream_cx_destroy_local.inc();
    }
    ctx.shared.breakers[tunnel.cluster].connections.release();
}
