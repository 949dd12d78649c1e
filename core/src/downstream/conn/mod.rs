//! A downstream HTTP connection of a connection manager: routing, upgrade negotiation, local
//! replies, keep-alive, and the switch to a tunnel. Its [`Client`] holds the codec, which turns
//! the bytes read into stream events and frames what goes back. Each request is an
//! [`Exchange`] in the connection's slab: a request forwarded upstream is a [`Stream`], a
//! machine of its own that the connection feeds events and whose [`Ended`] it acts on; a
//! CONNECT resolves and tunnels (`connect.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::http1::{self, BodyKind, HeadError, Method, RequestHead};
use crate::codec::{LocalReply, StreamEvent};
use crate::downstream::client::Client;
use crate::downstream::client::Downstream;
use crate::downstream::ctx::Ctx;
use crate::downstream::decide::{self, Decision};
use crate::downstream::local_reply;
use crate::downstream::request_log::RequestLog;
use crate::downstream::router::{End, Ended, Stream};
use crate::downstream::upgrade::upgrade_token;
use crate::io::{ConnId, QueryId, StreamRef};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::timers::Timer;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Step, Tunnel};
use crate::upstream::pool::PoolEvent;
use slab::Slab;
use smallvec::{smallvec, SmallVec};

mod connect;

pub(crate) use connect::{retire_connection, retire_tunnel};

use connect::TunnelEnd;

pub(crate) struct HttpConn {
    client: Client,
    local: SocketAddr,
    /// The connection's requests in progress, each its own machine under a slab key. HTTP/1.1
    /// carries one at a time; the slab is allocated with the first and reused after it.
    streams: Slab<Exchange>,
    /// A final answer is queued: no more requests are read, and the connection closes once
    /// it is flushed.
    closing: bool,
    /// This connection is counted in `downstream_cx_upgrades_active`.
    upgraded: bool,
    /// A request is in flight (counted in `downstream_rq_active`).
    in_request: bool,
    /// When the connection last carried a request (for the connection idle timeout), or
    /// bytes of a head (for the stream idle timeout), or went back to reading heads.
    last_activity: Instant,
    /// The earliest deadline this connection has in the timer table.
    armed: Option<Instant>,
    /// [`Self::read_requests`] is running.
    reading: bool,
    /// Counted as an HTTP/1.1 connection (once its first bytes said so, under `AUTO`).
    http1: bool,
}

/// One request of the connection, from its routing to its end: where its negotiation stands.
pub(crate) enum Exchange {
    /// A CONNECT waits for its target's name to resolve; early bytes wait with it.
    Resolving { query: QueryId, cluster: usize, port: u16, early: Vec<Bytes>, fin: bool, deadline: Instant },
    /// A request being proxied to an upstream.
    Forwarding(Stream),
    /// A terminated CONNECT or an upgraded request: raw bytes both ways.
    Tunnel(Tunnel),
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
        let mut conn = HttpConn {
            client,
            local,
            streams: Slab::new(),
            closing: false,
            upgraded: false,
            in_request: false,
            last_activity: now,
            armed: None,
            reading: false,
            http1: false,
        };
        conn.rearm(ctx);
        conn
    }

    /// The connection speaks HTTP/1.1: counted as such.
    pub(crate) fn count_http1(&mut self, ctx: &Ctx) {
        let stats = &ctx.shared.http(self.client.listener);
        stats.downstream_cx_http1_total.inc();
        stats.downstream_cx_http1_active.inc();
        self.http1 = true;
    }

    /// The first bytes of a connection whose protocol is not known yet: they wait in the codec
    /// as a head's would (and time out as one would) until the rest says which it is.
    pub(crate) fn hold(&mut self, ctx: &mut Ctx, now: Instant, data: Bytes) {
        ctx.shared.http(self.client.listener).downstream_cx_rx_bytes_total.add(data.len() as u64);
        self.last_activity = now;
        self.client.codec.read(data);
        self.rearm(ctx);
    }

    /// What [`Self::hold`] kept: the connection turned out to speak HTTP/2.
    pub(crate) fn take_held(&mut self) -> Bytes {
        self.client.codec.take_buffered()
    }

    /// Which connection this is: id, listener, peer and local address.
    pub(crate) fn identity(&self) -> (ConnId, usize, SocketAddr, SocketAddr) {
        (self.client.id, self.client.listener, self.client.peer, self.local)
    }

    /// The gauges that count this connection's socket as active (settled by [`Self::finish`],
    /// counted again by the proxy while the socket flushes before its close).
    pub(crate) fn socket_gauges(&self, shared: &Shared) -> SmallVec<[Gauge; 3]> {
        let http = &shared.http(self.client.listener);
        let mut gauges = smallvec![
            http.downstream_cx_active.clone(),
            shared.listeners[self.client.listener].downstream_cx_active.clone(),
        ];
        if self.http1 {
            gauges.push(http.downstream_cx_http1_active.clone());
        }
        gauges
    }

    /// Starts an exchange. The slab's first allocation is one entry, not the default four,
    /// three of which an HTTP/1.1 connection never uses (1.2 KB more per idle tunnel,
    /// measured); it grows by doubling from there.
    fn open(&mut self, exchange: Exchange) -> usize {
        if self.streams.capacity() == 0 {
            self.streams.reserve_exact(1);
        }
        self.streams.insert(exchange)
    }

    /// The request in progress (HTTP/1.1 has at most one).
    fn current(&self) -> Option<usize> {
        self.streams.iter().next().map(|(key, _)| key)
    }

    fn first(&self) -> Option<&Exchange> {
        self.streams.iter().next().map(|(_, exchange)| exchange)
    }

    fn exchange(&mut self) -> Option<&mut Exchange> {
        self.streams.iter_mut().next().map(|(_, exchange)| exchange)
    }

    fn tunnel(&mut self) -> Option<&mut Tunnel> {
        match self.exchange() {
            Some(Exchange::Tunnel(tunnel)) => Some(tunnel),
            _ => None,
        }
    }

    /// Reading heads: no request in progress and not closing.
    fn between_requests(&self) -> bool {
        self.streams.is_empty() && !self.closing
    }

    /// Between requests with nothing read ahead: closing it loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.between_requests() && self.client.codec.is_empty()
    }

    /// An event on the downstream connection itself.
    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let closes = match event {
            ConnEvent::Data(data) => {
                ctx.shared.http(self.client.listener).downstream_cx_rx_bytes_total.add(data.len() as u64);
                self.on_data(ctx, now, data)
            }
            ConnEvent::ReadClosed => match self.exchange() {
                Some(Exchange::Tunnel(tunnel)) => match tunnel.down_read_closed(&mut ctx.wire) {
                    Step::Done => self.end_tunnel(ctx, now, TunnelEnd::Finished),
                    Step::Continue => Vec::new(),
                },
                Some(Exchange::Resolving { fin, .. }) => {
                    *fin = true;
                    Vec::new()
                }
                Some(Exchange::Forwarding(_)) => {
                    self.with_stream(ctx, now, |s, _, ctx| s.down_closed(ctx, now, false))
                }
                // A client that half-closes between requests is done with the connection.
                None => self.close(Close::Flush),
            },
            ConnEvent::Closed => {
                ctx.shared.http(self.client.listener).downstream_cx_destroy_remote.inc();
                match self.exchange() {
                    Some(Exchange::Tunnel(_)) => self.end_tunnel(ctx, now, TunnelEnd::DownstreamReset),
                    Some(Exchange::Forwarding(_)) => {
                        self.with_stream(ctx, now, |s, _, ctx| s.down_closed(ctx, now, true))
                    }
                    _ => self.close(Close::Abort),
                }
            }
            ConnEvent::Flushed => {
                let id = self.client.id;
                match self.streams.iter_mut().next() {
                    Some((_, Exchange::Tunnel(tunnel))) => tunnel.flushed(&mut ctx.wire, now, id),
                    Some((_, Exchange::Forwarding(stream))) => stream.down_flushed(&self.client, ctx, now),
                    Some(_) => {}
                    None if !self.closing && ctx.wire.queued(id) <= self.client.buffer_limit / 2 => {
                        // Replies were backed up: read (and answer) again. A head held up
                        // meanwhile is timed from now: the wait was ours, not the client's.
                        if ctx.wire.read_paused(id) {
                            self.last_activity = now;
                        }
                        ctx.wire.resume_read(id);
                        let closes = self.read_requests(ctx, now);
                        self.rearm(ctx);
                        return closes;
                    }
                    None => {}
                }
                Vec::new()
            }
            ConnEvent::Connected | ConnEvent::ConnectFailed => Vec::new(),
        };
        self.rearm(ctx);
        closes
    }

    /// An event from the HTTP pool about one of this connection's streams.
    pub(crate) fn on_pool(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        let closes = self.pool_event(ctx, now, stream, event);
        self.rearm(ctx);
        closes
    }

    fn pool_event(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        if !matches!(self.exchange(), Some(Exchange::Forwarding(s)) if s.id.stream == stream) {
            return match event {
                // Bound to a request that has gone: hand the connection back.
                PoolEvent::Bound(up) => ctx.give_back(up, StreamRef { conn: self.client.id, stream }, now),
                _ => Vec::new(),
            };
        }
        let up = match event {
            PoolEvent::Response(up) => up,
            event => return self.with_stream(ctx, now, |s, client, ctx| s.on_pool(client, ctx, now, event)),
        };
        // The stream takes its response event by event, until it ends (or becomes a tunnel,
        // which took what followed the `101`).
        let mut closes = Vec::new();
        while matches!(self.first(), Some(Exchange::Forwarding(s)) if s.id.stream == stream) {
            let waiter = StreamRef { conn: self.client.id, stream };
            let Some(event) = ctx.pools.poll_response(up, waiter) else { break };
            closes
                .extend(self.with_stream(ctx, now, |s, client, ctx| s.on_response(client, ctx, now, event)));
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
        let Some(key) = self.current() else { return Vec::new() };
        let Exchange::Forwarding(stream) = &mut self.streams[key] else { return Vec::new() };
        match f(stream, &mut self.client, ctx) {
            Some(ended) => self.stream_ended(ctx, now, key, ended),
            None => Vec::new(),
        }
    }

    /// The stream in progress ended: answer in its place, read the next request, become a
    /// tunnel, or close, as it says.
    fn stream_ended(&mut self, ctx: &mut Ctx, now: Instant, key: usize, ended: Ended) -> Closes {
        let mut closes = Vec::new();
        match ended.end {
            End::Reply { reply, close } => {
                self.streams.remove(key);
                closes.extend(ended.up);
                closes.extend(self.local(ctx, now, &reply, close));
                if closes.iter().all(|(id, _)| *id != self.client.id) {
                    closes.extend(self.resume_after_stream(ctx, now));
                }
            }
            End::Complete { close } => {
                self.streams.remove(key);
                closes.extend(ended.up);
                self.end_request(ctx, now);
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
            End::Upgraded(switched) => {
                debug_assert!(!switched.stream, "an HTTP/1.1 client's tunnel is never a stream upstream");
                let (down, up) = (self.client.id, switched.up);
                let stats = &ctx.shared.clusters[switched.cluster];
                let tunnel = switched.into_tunnel(now, (down, up), &mut ctx.wire, stats);
                self.streams[key] = Exchange::Tunnel(tunnel);
            }
        }
        closes
    }

    /// Between requests again: read on, and answer what was read ahead. The next request's
    /// stream starts now (as in Envoy, a pipelined request waits for the one before it), and
    /// so do its stream idle timeout and the connection idle timeout.
    fn resume_after_stream(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.last_activity = now;
        self.client.codec.next_request();
        ctx.wire.resume_read(self.client.id);
        self.read_requests(ctx, now)
    }

    fn on_data(&mut self, ctx: &mut Ctx, now: Instant, data: Bytes) -> Closes {
        let (limit, closing) = (self.client.buffer_limit, self.closing);
        match self.exchange() {
            Some(Exchange::Tunnel(tunnel)) => {
                let len = data.len();
                tunnel.down_data(&mut ctx.wire, &ctx.shared.clusters[tunnel.cluster], now, data);
                if let Some(log) = &mut self.client.log {
                    log.received(len);
                }
                Vec::new()
            }
            Some(Exchange::Resolving { early, .. }) => {
                early.push(data);
                if early.iter().map(Bytes::len).sum::<usize>() >= limit {
                    ctx.wire.pause_read(self.client.id);
                }
                Vec::new()
            }
            Some(Exchange::Forwarding(stream)) => {
                stream.touch(now);
                self.client.codec.read(data);
                self.read_requests(ctx, now)
            }
            None if closing => Vec::new(),
            None => {
                // Bytes of a head keep the stream idle timeout from firing.
                self.last_activity = now;
                self.client.codec.read(data);
                self.read_requests(ctx, now)
            }
        }
    }

    /// Takes what the codec read, event by event: heads start requests, body pieces go to
    /// the request in progress, and a request read whole holds up what was read after it.
    /// Requests that end while this runs are followed by the next in the same loop, not by a
    /// nested call, however many a client pipelined.
    fn read_requests(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        if self.reading {
            return Vec::new();
        }
        self.reading = true;
        let mut closes = Vec::new();
        while !self.closing {
            // A client that sends requests without reading the answers waits until it reads:
            // answers queue only up to the buffer limit.
            if self.streams.is_empty() && ctx.wire.queued(self.client.id) > self.client.buffer_limit {
                if !self.client.codec.is_empty() {
                    ctx.wire.pause_read(self.client.id);
                }
                break;
            }
            let Some(event) = self.client.codec.poll(now) else {
                // All that was read is taken: the request in progress may go upstream.
                let before = self.streams.len();
                closes.extend(self.with_stream(ctx, now, |s, client, ctx| s.go(client, ctx, now)));
                if self.streams.len() == before {
                    break;
                }
                continue;
            };
            closes.extend(match event {
                Err(error) => self.protocol_error(ctx, now, error),
                Ok((id, StreamEvent::Head(body))) => match self.client.codec.take_head() {
                    Some(head) => self.on_head(ctx, now, id, head, body),
                    None => Vec::new(),
                },
                Ok((_, StreamEvent::Data(chunk))) => {
                    if let Some(log) = &mut self.client.log {
                        log.received(chunk.len());
                    }
                    self.with_stream(ctx, now, |s, client, ctx| s.body_data(client, ctx, now, chunk))
                }
                Ok((_, StreamEvent::End)) => {
                    self.with_stream(ctx, now, |s, client, ctx| s.body_end(client, ctx, now))
                }
            });
        }
        if self.current().is_some() && self.client.codec.request_done() && !self.client.codec.is_empty() {
            // Read ahead of the current request: it waits, and so does reading.
            ctx.wire.pause_read(self.client.id);
        }
        self.reading = false;
        closes
    }

    /// A request head: counted, then routed.
    fn on_head(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: u32,
        head: RequestHead,
        body: Result<BodyKind, HeadError>,
    ) -> Closes {
        self.last_activity = now;
        let stats = &ctx.shared.http(self.client.listener);
        stats.downstream_rq_total.inc();
        stats.downstream_rq_http1_total.inc();
        stats.downstream_rq_active.inc();
        self.in_request = true;
        let logs = &ctx.config.listeners[self.client.listener].hcm().access_log;
        self.client.log = RequestLog::start(logs, now, &head, "HTTP/1.1");
        let body = match body {
            Ok(body) => body,
            Err(error) => return self.protocol_error(ctx, now, error),
        };
        if head.method == Method::Connect {
            self.on_connect(ctx, now, id, head)
        } else {
            self.on_request(ctx, now, id, head, body)
        }
    }

    /// A request other than CONNECT: routed, checked against the upgrade table, then
    /// answered locally or forwarded.
    fn on_request(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: u32,
        mut head: RequestHead,
        body: BodyKind,
    ) -> Closes {
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
        let decision = decide::request(ctx, hcm, self.local, &head, upgrade.as_deref(), false);
        if upgrade.is_some() && decision.counts_upgrade() {
            self.count_upgrade(ctx);
        }
        // A local answer before the body was read ends the connection: the body would
        // otherwise be taken for the next request.
        let reusable = keep_alive && body == BodyKind::Empty && !ctx.draining();
        let (index, addr) = match decision {
            Decision::Forward(index, addr) => {
                if let (Some(log), Some(target)) =
                    (&mut self.client.log, index.get(&hcm.route_config).action.target())
                {
                    log.upstream(target.cluster, addr);
                }
                (index, addr)
            }
            Decision::Refused => {
                ctx.shared.http(self.client.listener).downstream_rq_ws_on_non_ws_route.inc();
                return self.reply(ctx, now, 403, "", true);
            }
            Decision::Reply(status, text) => return self.reply(ctx, now, status, &text, !reusable),
            Decision::Tunnel { .. } => unreachable!("only CONNECT tunnels"),
        };
        let id = StreamRef { conn: self.client.id, stream: id };
        let upgrade = upgrade.is_some();
        if upgrade {
            // An upgrade's body is the tunnel, whatever framing its head claims (Envoy U6).
            self.client.codec.set_body(BodyKind::Tunnel);
        }
        let stream =
            Stream::start(&mut self.client, ctx, now, id, head, body, index, addr, upgrade, keep_alive);
        self.open(Exchange::Forwarding(stream));
        Vec::new()
    }

    fn count_upgrade(&mut self, ctx: &mut Ctx) {
        let stats = &ctx.shared.http(self.client.listener);
        stats.downstream_cx_upgrades_total.inc();
        stats.downstream_cx_upgrades_active.inc();
        self.upgraded = true;
    }

    /// The client broke the protocol: the request in progress answers it (or is cut, if its
    /// response has started), else the connection does; either way reading ends.
    fn protocol_error(&mut self, ctx: &mut Ctx, now: Instant, error: HeadError) -> Closes {
        tracing::debug!(details = error.details(), "downstream protocol error");
        ctx.shared.http(self.client.listener).downstream_cx_protocol_error.inc();
        self.client.codec.clear();
        if matches!(self.first(), Some(Exchange::Forwarding(_))) {
            return self.with_stream(ctx, now, |s, _, ctx| s.refuse(ctx, now, error.status()));
        }
        self.reply(ctx, now, error.status(), http1::reason_phrase(error.status()), true)
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
        if let Some(log) = &mut self.client.log {
            log.local(reply.status, local_reply::flag(reply));
            log.sent(reply.body.len());
        }
        self.client.send(ctx, reply.status, bytes);
        self.end_request(ctx, now);
        if close {
            ctx.shared.http(self.client.listener).downstream_cx_destroy_local.inc();
            return self.close(Close::Flush);
        }
        self.client.codec.next_request();
        Vec::new()
    }

    pub(crate) fn end_request(&mut self, ctx: &mut Ctx, now: Instant) {
        if let Some(log) = self.client.log.take() {
            log.write(ctx, now, self.client.listener, self.client.peer, self.local);
        }
        if std::mem::take(&mut self.in_request) {
            let stats = &ctx.shared.http(self.client.listener);
            stats.downstream_rq_active.dec();
            stats.downstream_rq_completed.inc();
        }
        if std::mem::take(&mut self.upgraded) {
            ctx.shared.http(self.client.listener).downstream_cx_upgrades_active.dec();
        }
    }

    pub(crate) fn close(&mut self, kind: Close) -> Closes {
        self.closing = true;
        vec![(self.client.id, kind)]
    }

    /// The connection is gone: settle its gauges; returns the upstream connection it still
    /// held, for the proxy to close.
    pub(crate) fn finish(mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.end_request(ctx, now);
        let stats = &ctx.shared.http(self.client.listener);
        stats.downstream_cx_active.dec();
        if self.http1 {
            stats.downstream_cx_http1_active.dec();
        }
        ctx.shared.listeners[self.client.listener].downstream_cx_active.dec();
        let exchange = self.current().map(|key| self.streams.remove(key));
        let up = match exchange {
            Some(Exchange::Tunnel(tunnel)) => {
                retire_tunnel(ctx, now, &tunnel, tunnel.upstream, false);
                Some(tunnel.upstream)
            }
            Some(Exchange::Forwarding(mut stream)) => stream.abandon(ctx, now),
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
        let listener = self.client.listener;
        match self.first() {
            Some(Exchange::Tunnel(t)) if t.connect_expired(now) => {
                ctx.shared.clusters[t.cluster].upstream_cx_connect_timeout.inc();
                ctx.shared.clusters[t.cluster].upstream_cx_connect_fail.inc();
                self.connect_failed(ctx, now, local_reply::CONNECT_TIMEOUT)
            }
            Some(Exchange::Tunnel(t)) if t.idle_expired(now) => {
                ctx.shared.http(listener).downstream_rq_idle_timeout.inc();
                self.end_tunnel(ctx, now, TunnelEnd::Finished)
            }
            Some(Exchange::Resolving { cluster, deadline, .. }) if *deadline <= now => {
                ctx.shared.clusters[*cluster].upstream_cx_connect_timeout.inc();
                self.streams.clear();
                self.reply(ctx, now, 503, local_reply::CONNECT_TIMEOUT, true)
            }
            Some(Exchange::Forwarding(_)) => {
                self.with_stream(ctx, now, |s, client, ctx| s.on_timer(client, ctx, now))
            }
            Some(_) => Vec::new(),
            None if self.headers_deadline(ctx).is_some_and(|at| at <= now) => {
                ctx.shared.http(listener).downstream_rq_header_timeout.inc();
                self.client.codec.clear();
                self.reply(ctx, now, 408, "request header timeout", true)
            }
            None if self.idle_deadline(ctx).is_some_and(|at| at <= now) => {
                if self.client.codec.is_empty() {
                    ctx.shared.http(listener).downstream_cx_idle_timeout.inc();
                    return self.close(Close::Flush);
                }
                // A head that stopped arriving: Envoy's stream idle timeout answer.
                ctx.shared.http(listener).downstream_rq_idle_timeout.inc();
                self.client.codec.clear();
                self.reply(ctx, now, 408, "stream timeout", true)
            }
            None => Vec::new(),
        }
    }

    /// Between requests the connection idle timeout runs; while a request head is arriving,
    /// the stream idle timeout (Envoy starts a stream at its first byte).
    fn idle_deadline(&self, ctx: &Ctx) -> Option<Instant> {
        if !self.between_requests() {
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
        if !self.between_requests() || self.client.codec.is_empty() {
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
        let next = match self.first() {
            None if self.closing => None,
            None => match (self.idle_deadline(ctx), self.headers_deadline(ctx)) {
                (Some(idle), Some(headers)) => Some(idle.min(headers)),
                (idle, headers) => idle.or(headers),
            },
            Some(Exchange::Resolving { deadline, .. }) => Some(*deadline),
            Some(Exchange::Tunnel(tunnel)) => tunnel.deadline(),
            Some(Exchange::Forwarding(stream)) => stream.deadline(),
        };
        if let Some(at) = next {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                ctx.timers.set(at, Timer::Http(self.client.id));
            }
        }
    }
}
