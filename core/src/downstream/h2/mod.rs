//! A downstream HTTP/2 connection: many requests at once, each an [`Exchange`] under the key
//! its stream has in the [codec](crate::codec::h2). Requests are routed and forwarded by the
//! same machines as HTTP/1.1's (the router's [`Stream`], seeing its stream as a
//! [`Downstream`]); a CONNECT becomes a [`Tunnel`] between its stream and a raw connection
//! (`connect.rs`). A stream's trouble stays on the stream: a local reply or a reset, never
//! the connection's close.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use h2::Reason;
use rustc_hash::FxHashMap;
use smallvec::{smallvec, SmallVec};

use crate::codec::h2::{Polled, ServerCodec, ServerEvent, Settings};
use crate::codec::http1::{BodyKind, Method, RequestHead};
use crate::codec::LocalReply;
use crate::config::{HttpConnectionManager, Route};
use crate::downstream::ctx::Ctx;
use crate::downstream::decide::{self, Decision};
use crate::downstream::local_reply;
use crate::downstream::request_log::RequestLog;
use crate::downstream::route::RouteIndex;
use crate::downstream::router::{End, Ended, Stream};
use crate::io::{ConnId, QueryId, StreamRef};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::timers::Timer;
use crate::transport::{Close, ConnEvent};
use crate::tunnel::{Closes, Tunnel};
use crate::upstream::pool::PoolEvent;

mod connect;
mod down;

use connect::Side;
use down::{is_token, local_response, request_head, upgrade_request, H2Down};

pub(crate) struct H2Conn {
    id: ConnId,
    listener: usize,
    peer: SocketAddr,
    local: SocketAddr,
    buffer_limit: usize,
    codec: ServerCodec,
    /// The exchange of each open stream, by the stream's codec key.
    exchanges: Vec<Option<Entry>>,
    /// Forwarded streams by their wire id, the name the pool knows them by.
    forwarded: FxHashMap<u32, usize>,
    /// Terminated CONNECTs by their upstream connection.
    tunnels: FxHashMap<ConnId, usize>,
    /// The connection is ending (the codec finished, or the proxy closes it).
    closing: bool,
    /// GOAWAY went out: no new streams, and the connection closes when the last one ends.
    draining: bool,
    /// Streams the client opened, and how many of those it reset before their response was
    /// done (a rapid-reset attack makes them nearly all of them).
    opened: u32,
    premature_resets: u32,
    /// Keep-alive: when the next PING goes, and until when the one sent may be answered.
    ping_at: Option<Instant>,
    pong_by: Option<Instant>,
    /// When the connection last had no streams (for its idle timeout).
    idle_since: Instant,
    armed: Option<Instant>,
}

struct Entry {
    exchange: Exchange,
    /// Counted in `downstream_cx_upgrades_active` (a CONNECT).
    upgraded: bool,
    /// The request, for the access log (when the listener has one).
    log: Option<Box<RequestLog>>,
}

enum Exchange {
    /// A CONNECT's target name is resolving; what the client sent meanwhile waits.
    Resolving {
        query: QueryId,
        cluster: usize,
        port: u16,
        early: Vec<Bytes>,
        fin: bool,
        deadline: Instant,
    },
    Forwarding(Stream),
    Tunnel(Tunnel<Side>),
    /// Answered (or forwarded whole): the stream goes once its response has left.
    Answered,
}

/// The HTTP/2 settings a connection manager asks for.
fn settings(hcm: &HttpConnectionManager) -> Settings {
    let options = &hcm.http2_protocol_options;
    Settings {
        max_concurrent_streams: options.max_concurrent_streams,
        initial_stream_window_size: options.initial_stream_window_size,
        initial_connection_window_size: options.initial_connection_window_size,
        max_header_list_size: hcm.max_request_headers_kb * 1024,
        extended_connect: options.allow_connect,
    }
}

/// The route terminates a POST as a CONNECT (`connect_config.allow_post`).
fn allows_post(route: &Route) -> bool {
    route.action.target().is_some_and(|t| {
        t.upgrade_configs.iter().any(|u| {
            u.enabled
                && u.upgrade_type.eq_ignore_ascii_case("CONNECT")
                && u.connect_config.as_ref().is_some_and(|c| c.allow_post)
        })
    })
}

impl H2Conn {
    /// An HTTP/2 connection (its preface may already be in `read`).
    pub(crate) fn new(
        ctx: &mut Ctx,
        now: Instant,
        (id, listener): (ConnId, usize),
        peer: SocketAddr,
        local: SocketAddr,
        read: Bytes,
    ) -> (H2Conn, Closes) {
        let stats = &ctx.shared.http(listener);
        stats.downstream_cx_http2_total.inc();
        stats.downstream_cx_http2_active.inc();
        let codec = ServerCodec::new(settings(ctx.config.listeners[listener].hcm()));
        let mut conn = H2Conn {
            id,
            listener,
            peer,
            local,
            buffer_limit: ctx.config.listeners[listener].per_connection_buffer_limit_bytes as usize,
            codec,
            exchanges: Vec::new(),
            forwarded: FxHashMap::default(),
            tunnels: FxHashMap::default(),
            closing: false,
            draining: false,
            opened: 0,
            premature_resets: 0,
            ping_at: ctx.config.listeners[listener]
                .hcm()
                .http2_protocol_options
                .keepalive
                .map(|k| now + k.interval),
            pong_by: None,
            idle_since: now,
            armed: None,
        };
        if !read.is_empty() {
            conn.codec.read(read);
        }
        let closes = conn.drive(ctx, now);
        conn.rearm(ctx);
        (conn, closes)
    }

    /// The gauges that count this connection's socket as active.
    pub(crate) fn socket_gauges(&self, shared: &Shared) -> SmallVec<[Gauge; 3]> {
        let http = &shared.http(self.listener);
        smallvec![
            http.downstream_cx_active.clone(),
            http.downstream_cx_http2_active.clone(),
            shared.listeners[self.listener].downstream_cx_active.clone(),
        ]
    }

    /// No stream is open and nothing read waits: closing it loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.exchanges.iter().all(Option::is_none) && self.codec.is_idle()
    }

    /// The proxy is shutting down: GOAWAY, and close once the open streams have ended.
    pub(crate) fn drain(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        if !self.draining {
            self.draining = true;
            self.codec.graceful_shutdown();
            ctx.shared.http2(self.listener).goaway_sent.inc();
        }
        self.drive(ctx, now)
    }

    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        let closes = match event {
            ConnEvent::Data(data) => {
                ctx.shared.http(self.listener).downstream_cx_rx_bytes_total.add(data.len() as u64);
                self.codec.read(data);
                // A client still talking (window updates among other frames) while a tunnel's
                // bytes wait on its window is a slow reader draining, not an idle tunnel.
                self.touch_tunnels(ctx, now, true);
                self.drive(ctx, now)
            }
            ConnEvent::ReadClosed => {
                self.codec.read_closed();
                self.drive(ctx, now)
            }
            ConnEvent::Closed => {
                ctx.shared.http(self.listener).downstream_cx_destroy_remote.inc();
                self.close(Close::Abort)
            }
            ConnEvent::Flushed => {
                // The socket drained: the tunnels' bytes are moving to a slow reader, which
                // is activity, not idleness (their streams' queues move only when h2 has
                // written what it holds).
                self.touch_tunnels(ctx, now, false);
                self.drive(ctx, now)
            }
            ConnEvent::Connected | ConnEvent::ConnectFailed => Vec::new(),
        };
        self.rearm(ctx);
        closes
    }

    /// Polls the codec until it has nothing more, acting on each event, and writes what h2
    /// wrote. Every entry point ends here: h2 moves only while polled.
    fn drive(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let mut closes = Vec::new();
        while !self.closing {
            self.flush(ctx);
            self.codec.set_room(self.buffer_limit.saturating_sub(ctx.wire.queued(self.id)));
            match self.codec.poll() {
                Some(Polled::Stream(key, event)) => closes.extend(self.on_stream(ctx, now, key, event)),
                Some(Polled::Closed(error)) => {
                    if let Some(error) = error {
                        tracing::debug!(%error, "downstream HTTP/2 connection ended");
                        if error.is_go_away() && error.is_library() {
                            ctx.shared.http(self.listener).downstream_cx_protocol_error.inc();
                            ctx.shared.http2(self.listener).goaway_sent.inc();
                        }
                    }
                    self.flush(ctx);
                    closes.extend(self.close(Close::Flush));
                }
                None => break,
            }
        }
        if self.pong_by.is_some() && self.codec.pong_received() {
            self.pong_by = None;
        }
        self.flush(ctx);
        if self.draining && !self.closing && self.exchanges.iter().all(Option::is_none) {
            closes.extend(self.close(Close::Flush));
        }
        closes
    }

    /// Counts the connection's progress as its tunnels' activity: all of them, or (`waiting`)
    /// those with bytes queued towards the client.
    fn touch_tunnels(&mut self, ctx: &mut Ctx, now: Instant, waiting: bool) {
        for key in 0..self.exchanges.len() {
            let tunnel = matches!(self.entry(key), Some(Exchange::Tunnel(_)));
            if tunnel && (!waiting || self.codec.queued(key) > 0) {
                self.tunnel_sent(ctx, now, key);
            }
        }
    }

    fn flush(&mut self, ctx: &mut Ctx) {
        if let Some(out) = self.codec.take_output() {
            ctx.shared.http(self.listener).downstream_cx_tx_bytes_total.add(out.len() as u64);
            ctx.wire.write(self.id, out);
        }
    }

    fn close(&mut self, kind: Close) -> Closes {
        if std::mem::replace(&mut self.closing, true) {
            return Vec::new();
        }
        vec![(self.id, kind)]
    }

    fn on_stream(&mut self, ctx: &mut Ctx, now: Instant, key: usize, event: ServerEvent) -> Closes {
        let closes = match event {
            ServerEvent::Head(parts, end) => self.on_head(ctx, now, key, parts, end),
            ServerEvent::Data(data) => self.on_data(ctx, now, key, data),
            ServerEvent::End => self.on_end(ctx, now, key),
            ServerEvent::Reset(reason) => {
                tracing::debug!(?reason, "downstream stream reset");
                ctx.shared.http2(self.listener).rx_reset.inc();
                if !matches!(self.entry(key), Some(Exchange::Answered) | None) {
                    self.premature_resets += 1;
                }
                let closes = self.reset_by_client(ctx, now, key);
                self.check_resets(ctx);
                closes
            }
            ServerEvent::Sent => self.on_sent(ctx, now, key),
        };
        self.maybe_retire(ctx, now, key);
        closes
    }

    fn entry(&mut self, key: usize) -> Option<&mut Exchange> {
        self.exchanges.get_mut(key).and_then(Option::as_mut).map(|e| &mut e.exchange)
    }

    /// Sets the stream's exchange (a stream counted as an upgrade stays counted).
    fn insert(&mut self, key: usize, exchange: Exchange) {
        if self.exchanges.len() <= key {
            self.exchanges.resize_with(key + 1, || None);
        }
        match &mut self.exchanges[key] {
            Some(entry) => entry.exchange = exchange,
            slot => *slot = Some(Entry { exchange, upgraded: false, log: None }),
        }
    }

    /// A request head opens a stream: counted, decided, and answered, forwarded or tunnelled.
    fn on_head(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        parts: http::request::Parts,
        end: bool,
    ) -> Closes {
        let stats = &ctx.shared.http(self.listener);
        stats.downstream_rq_total.inc();
        stats.downstream_rq_http2_total.inc();
        stats.downstream_rq_active.inc();
        self.opened += 1;
        ctx.shared.http2(self.listener).streams_active.inc();
        self.insert(key, Exchange::Answered);
        let Ok((head, body)) = request_head(&parts, end) else {
            return self.reply(ctx, now, key, &local_reply::text(400, "Bad Request"));
        };
        let config = ctx.config.clone();
        let hcm = config.listeners[self.listener].hcm();
        if let Some(entry) = self.exchanges[key].as_mut() {
            entry.log = RequestLog::start(&hcm.access_log, now, &head, "HTTP/2");
        }
        let protocol = parts.extensions.get::<h2::ext::Protocol>().map(|p| p.as_str().to_owned());
        let bytestream = protocol.as_deref().is_none_or(|p| p.eq_ignore_ascii_case("bytestream"));
        if head.method == Method::Connect && bytestream {
            // A CONNECT, or an extended CONNECT for a byte stream (Envoy C11).
            let decision = decide::connect(ctx, hcm, self.local, &head.target, &head, true);
            return self.on_connect(ctx, now, key, head, decision, end);
        }
        // Extended CONNECT for another protocol (WebSocket over HTTP/2) is that protocol's
        // HTTP/1.1 upgrade.
        let (head, upgrade) = match protocol {
            // h2 takes `:protocol` as any text; it becomes an `upgrade` field, so it must be a
            // token (found by fuzzing: a CR LF in it would have split the upstream head).
            Some(protocol) if !is_token(&protocol) => {
                return self.reply(ctx, now, key, &local_reply::text(400, ""));
            }
            Some(protocol) if head.method == Method::Connect => {
                (upgrade_request(head, &parts, &protocol, ctx.random()), Some(protocol))
            }
            _ => (head, None),
        };
        if head.headers.get("host").is_none_or(<[u8]>::is_empty) {
            return self.reply(ctx, now, key, &local_reply::text(400, ""));
        }
        let decision =
            decide::request(ctx, hcm, self.local, &head, upgrade.as_deref().map(str::as_bytes), true);
        if upgrade.is_some() && decision.counts_upgrade() {
            self.count_upgrade(ctx, key);
        }
        let (index, addr) = match decision {
            Decision::Forward(index, addr) => {
                if let (Some(log), Some(target)) =
                    (self.log(key), index.get(&hcm.route_config).action.target())
                {
                    log.upstream(target.cluster, addr);
                }
                (index, addr)
            }
            Decision::Refused => {
                ctx.shared.http(self.listener).downstream_rq_ws_on_non_ws_route.inc();
                return self.reply(ctx, now, key, &local_reply::text(403, ""));
            }
            Decision::Reply(status, text) => {
                return self.reply(ctx, now, key, &local_reply::text(status, &text))
            }
            Decision::Tunnel { .. } => unreachable!("only a CONNECT is tunnelled"),
        };
        if head.method == Method::Post && upgrade.is_none() && allows_post(index.get(&hcm.route_config)) {
            // `connect_config.allow_post` (Envoy C8): the POST is terminated as a CONNECT would
            // be, its body the tunnel's bytes; it is not counted as an upgrade.
            let cluster = index.get(&hcm.route_config).action.target().map_or(0, |t| t.cluster);
            return self.open_tunnel(ctx, now, key, cluster, addr, Vec::new(), end);
        }
        self.forward(ctx, now, key, head, body, (index, addr), upgrade.is_some())
    }

    /// Forwards the stream's request along `route` to `addr`; an upgrade (or a proxied CONNECT)
    /// becomes a tunnel once the upstream agrees.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        head: RequestHead,
        body: BodyKind,
        (index, addr): (RouteIndex, SocketAddr),
        upgrade: bool,
    ) -> Closes {
        let id = StreamRef { conn: self.id, stream: self.codec.stream_id(key) };
        let mut down = self.down(key);
        let mut stream = Stream::start(&mut down, ctx, now, id, head, body, index, addr, upgrade, true);
        let mut ended = stream.go(&mut down, ctx, now);
        if ended.is_none() && body == BodyKind::Empty {
            ended = stream.body_end(&mut down, ctx, now);
        }
        self.forwarded.insert(id.stream, key);
        self.insert(key, Exchange::Forwarding(stream));
        match ended {
            Some(ended) => self.stream_ended(ctx, now, key, ended),
            None => Vec::new(),
        }
    }

    /// The stream asked for an upgrade (CONNECT, or extended CONNECT) the table allowed.
    fn count_upgrade(&mut self, ctx: &Ctx, key: usize) {
        let stats = &ctx.shared.http(self.listener);
        stats.downstream_cx_upgrades_total.inc();
        stats.downstream_cx_upgrades_active.inc();
        if let Some(entry) = self.exchanges.get_mut(key).and_then(Option::as_mut) {
            entry.upgraded = true;
        }
    }

    fn down(&mut self, key: usize) -> H2Down<'_> {
        H2Down {
            codec: &mut self.codec,
            key,
            conn: self.id,
            listener: self.listener,
            peer: self.peer,
            buffer_limit: self.buffer_limit,
            log: self.exchanges.get_mut(key).and_then(Option::as_mut).and_then(|e| e.log.as_deref_mut()),
        }
    }

    /// The access log record of the stream under `key`, if its listener logs.
    pub(super) fn log(&mut self, key: usize) -> Option<&mut RequestLog> {
        self.exchanges.get_mut(key)?.as_mut()?.log.as_deref_mut()
    }

    /// Runs `f` on the forwarded stream under `key`, and acts on its end if it ended.
    fn with_stream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: usize,
        f: impl FnOnce(&mut Stream, &mut H2Down<'_>, &mut Ctx) -> Option<Ended>,
    ) -> Closes {
        let Some(Some(Entry { exchange: Exchange::Forwarding(stream), log, .. })) =
            self.exchanges.get_mut(key)
        else {
            return Vec::new();
        };
        let mut down = H2Down {
            codec: &mut self.codec,
            key,
            conn: self.id,
            listener: self.listener,
            peer: self.peer,
            buffer_limit: self.buffer_limit,
            log: log.as_deref_mut(),
        };
        match f(stream, &mut down, ctx) {
            Some(ended) => self.stream_ended(ctx, now, key, ended),
            None => Vec::new(),
        }
    }

    /// A forwarded stream ended: its stream answers in its place, or is reset; the
    /// connection goes on either way.
    fn stream_ended(&mut self, ctx: &mut Ctx, now: Instant, key: usize, ended: Ended) -> Closes {
        let id = self.codec.stream_id(key);
        self.forwarded.remove(&id);
        let mut closes: Closes = ended.up.into_iter().collect();
        match ended.end {
            End::Reply { reply, .. } => closes.extend(self.reply(ctx, now, key, &reply)),
            End::Complete { .. } => self.insert(key, Exchange::Answered),
            End::Cut(_) => self.reset(ctx, key, Reason::INTERNAL_ERROR),
            End::Upgraded(switched) => {
                let up = switched.up;
                let upstream = if switched.stream {
                    // Its pool events keep coming under the stream's wire id.
                    self.forwarded.insert(id, key);
                    Side::Pooled(up, id)
                } else {
                    self.tunnels.insert(up, key);
                    Side::Conn(up)
                };
                let shared = ctx.shared.clone();
                let cluster = switched.cluster;
                let mut ends = connect::H2Ends { ctx, codec: &mut self.codec, down: self.id, cluster, now };
                let tunnel = switched.into_tunnel(
                    now,
                    (Side::Stream(key), upstream),
                    &mut ends,
                    &shared.clusters[cluster],
                );
                self.insert(key, Exchange::Tunnel(tunnel));
            }
        }
        closes
    }

    fn on_data(&mut self, ctx: &mut Ctx, now: Instant, key: usize, data: Bytes) -> Closes {
        let limit = self.buffer_limit;
        if let Some(log) = self.log(key) {
            log.received(data.len());
        }
        match self.entry(key) {
            Some(Exchange::Forwarding(_)) => {
                self.with_stream(ctx, now, key, |s, down, ctx| s.body_data(down, ctx, now, data))
            }
            Some(Exchange::Tunnel(_)) => self.tunnel_data(ctx, now, key, data),
            Some(Exchange::Resolving { early, .. }) => {
                early.push(data);
                if early.iter().map(Bytes::len).sum::<usize>() >= limit {
                    self.codec.pause(key);
                }
                Vec::new()
            }
            // The answer went already: what the client still sends is dropped.
            Some(Exchange::Answered) | None => Vec::new(),
        }
    }

    fn on_end(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        match self.entry(key) {
            Some(Exchange::Forwarding(_)) => {
                self.with_stream(ctx, now, key, |s, down, ctx| s.body_end(down, ctx, now))
            }
            Some(Exchange::Tunnel(_)) => self.tunnel_fin(ctx, now, key),
            Some(Exchange::Resolving { fin, .. }) => {
                *fin = true;
                Vec::new()
            }
            Some(Exchange::Answered) | None => Vec::new(),
        }
    }

    fn on_sent(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        match self.entry(key) {
            Some(Exchange::Forwarding(_)) => self.with_stream(ctx, now, key, |s, down, ctx| {
                s.down_flushed(down, ctx, now);
                None
            }),
            Some(Exchange::Tunnel(_)) => self.tunnel_sent(ctx, now, key),
            _ => Vec::new(),
        }
    }

    /// The client reset the stream: whatever it was doing upstream is given up.
    fn reset_by_client(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        let Some(entry) = self.exchanges.get_mut(key).and_then(Option::take) else { return Vec::new() };
        self.exchanges[key] =
            Some(Entry { exchange: Exchange::Answered, upgraded: entry.upgraded, log: entry.log });
        match entry.exchange {
            Exchange::Forwarding(mut stream) => {
                self.forwarded.remove(&stream.id.stream);
                stream.abandon(ctx, now).map(|up| (up, Close::Abort)).into_iter().collect()
            }
            Exchange::Tunnel(tunnel) => self.drop_tunnel(ctx, now, tunnel),
            Exchange::Resolving { .. } | Exchange::Answered => Vec::new(),
        }
    }

    /// Rapid reset (CVE-2023-44487): a client that resets most of the streams it opens, before
    /// their answers, makes the proxy work for nothing. Past a floor, when half its streams
    /// ended that way, it gets GOAWAY (ENHANCE_YOUR_CALM) and its connection ends; other
    /// connections never notice.
    fn check_resets(&mut self, ctx: &mut Ctx) {
        const FLOOR: u32 = 100;
        // Once: the GOAWAY makes the connection draining (resets read before it closes are
        // not counted again).
        if self.premature_resets >= FLOOR && self.premature_resets * 2 >= self.opened && !self.draining {
            tracing::warn!(
                opened = self.opened,
                reset = self.premature_resets,
                "downstream HTTP/2 client resets most of its streams early; closing its connection"
            );
            ctx.shared.http(self.listener).downstream_rq_too_many_premature_resets.inc();
            ctx.shared.http2(self.listener).goaway_sent.inc();
            self.draining = true;
            self.codec.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
        }
    }

    /// Resets a stream of ours (RST_STREAM); it is then forgotten.
    fn reset(&mut self, ctx: &mut Ctx, key: usize, reason: Reason) {
        ctx.shared.http2(self.listener).tx_reset.inc();
        self.codec.reset(key, reason);
        self.insert(key, Exchange::Answered);
    }

    /// Answers a stream with a reply of the proxy's own.
    fn reply(&mut self, ctx: &mut Ctx, now: Instant, key: usize, reply: &LocalReply<'_>) -> Closes {
        let date = ctx.clock.date(now);
        let server = ctx.config.listeners[self.listener].hcm().server_name.clone();
        ctx.shared.http(self.listener).response(reply.status);
        let body = Bytes::copy_from_slice(reply.body);
        if let Some(log) = self.log(key) {
            log.local(reply.status, local_reply::flag(reply));
            log.sent(body.len());
        }
        self.codec.send_head(key, local_response(reply, &date, &server), body.is_empty());
        if !body.is_empty() {
            self.codec.send_data(key, body);
            self.codec.send_end(key);
        }
        self.insert(key, Exchange::Answered);
        Vec::new()
    }

    /// Forgets an answered stream once its response has left (and settles its counts).
    fn maybe_retire(&mut self, ctx: &mut Ctx, now: Instant, key: usize) {
        let answered = matches!(self.entry(key), Some(Exchange::Answered));
        if !answered || !self.codec.response_done(key) {
            return;
        }
        let entry = self.exchanges[key].take().expect("checked above");
        self.codec.remove(key);
        self.settle(ctx, now, &entry);
        if self.exchanges.iter().all(Option::is_none) {
            self.exchanges.clear();
            self.idle_since = now;
        }
    }

    /// A stream is over: the request and upgrade gauges drop, and its access log is written.
    fn settle(&self, ctx: &mut Ctx, now: Instant, entry: &Entry) {
        let stats = &ctx.shared.http(self.listener);
        stats.downstream_rq_active.dec();
        stats.downstream_rq_completed.inc();
        ctx.shared.http2(self.listener).streams_active.dec();
        if entry.upgraded {
            stats.downstream_cx_upgrades_active.dec();
        }
        if let Some(log) = &entry.log {
            log.write(ctx, now, self.listener, self.peer, self.local);
        }
    }

    /// An event from the HTTP pool about one of this connection's forwarded streams (named by
    /// wire id).
    pub(crate) fn on_pool(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        let Some(&key) = self.forwarded.get(&stream) else {
            return match event {
                // Bound to a stream that has gone: hand the connection back.
                PoolEvent::Bound(up) => ctx.give_back(up, StreamRef { conn: self.id, stream }, now),
                _ => Vec::new(),
            };
        };
        if matches!(self.entry(key), Some(Exchange::Tunnel(_))) {
            let mut closes = self.tunnel_pool_event(ctx, now, key, event);
            closes.extend(self.drive(ctx, now));
            self.maybe_retire(ctx, now, key);
            self.rearm(ctx);
            return closes;
        }
        let mut closes = match event {
            PoolEvent::Response(up) => {
                let mut closes = Vec::new();
                while self.forwarded.get(&stream) == Some(&key) {
                    let waiter = StreamRef { conn: self.id, stream };
                    let Some(event) = ctx.pools.poll_response(up, waiter) else { break };
                    closes.extend(
                        self.with_stream(ctx, now, key, |s, down, ctx| s.on_response(down, ctx, now, event)),
                    );
                }
                closes
            }
            event => self.with_stream(ctx, now, key, |s, down, ctx| s.on_pool(down, ctx, now, event)),
        };
        closes.extend(self.drive(ctx, now));
        self.maybe_retire(ctx, now, key);
        self.rearm(ctx);
        closes
    }

    /// The connection is gone: settle its gauges and every stream's; returns the upstream
    /// connections its streams held, for the proxy to close.
    pub(crate) fn finish(mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let stats = &ctx.shared.http(self.listener);
        stats.downstream_cx_active.dec();
        stats.downstream_cx_http2_active.dec();
        ctx.shared.listeners[self.listener].downstream_cx_active.dec();
        let mut closes = Vec::new();
        for entry in std::mem::take(&mut self.exchanges).into_iter().flatten() {
            self.settle(ctx, now, &entry);
            match entry.exchange {
                Exchange::Forwarding(mut stream) => {
                    closes.extend(stream.abandon(ctx, now).map(|up| (up, Close::Abort)));
                }
                Exchange::Tunnel(tunnel) => closes.extend(self.drop_tunnel(ctx, now, tunnel)),
                Exchange::Resolving { .. } | Exchange::Answered => {}
            }
        }
        closes
    }

    /// A timer of this connection fired: act on whatever is due.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.armed = None;
        let mut closes = Vec::new();
        if self.pong_by.is_some_and(|by| by <= now) && !self.codec.pong_received() {
            // Keep-alive: the client did not answer the PING in time.
            ctx.shared.http2(self.listener).keepalive_timeout.inc();
            return self.close(Close::Abort);
        }
        if let Some(keepalive) = ctx.config.listeners[self.listener].hcm().http2_protocol_options.keepalive {
            if self.ping_at.is_some_and(|at| at <= now) {
                self.ping_at = Some(now + keepalive.interval);
                if self.pong_by.is_none() && self.codec.send_ping() {
                    self.pong_by = Some(now + keepalive.timeout);
                }
            }
        }
        for key in 0..self.exchanges.len() {
            let due = self.deadline_of(key).is_some_and(|at| at <= now);
            if due {
                closes.extend(self.expire(ctx, now, key));
                self.maybe_retire(ctx, now, key);
            }
        }
        if self.exchanges.iter().all(Option::is_none) && self.idle_deadline(ctx).is_some_and(|at| at <= now) {
            ctx.shared.http(self.listener).downstream_cx_idle_timeout.inc();
            self.draining = true;
            self.codec.graceful_shutdown();
            ctx.shared.http2(self.listener).goaway_sent.inc();
        }
        closes.extend(self.drive(ctx, now));
        self.rearm(ctx);
        closes
    }

    fn expire(&mut self, ctx: &mut Ctx, now: Instant, key: usize) -> Closes {
        match self.entry(key) {
            Some(Exchange::Forwarding(_)) => {
                self.with_stream(ctx, now, key, |s, down, ctx| s.on_timer(down, ctx, now))
            }
            Some(Exchange::Tunnel(_)) => self.tunnel_timer(ctx, now, key),
            Some(Exchange::Resolving { cluster, .. }) => {
                let cluster = *cluster;
                ctx.shared.clusters[cluster].upstream_cx_connect_timeout.inc();
                self.reply(ctx, now, key, &local_reply::text(503, local_reply::CONNECT_TIMEOUT))
            }
            Some(Exchange::Answered) | None => Vec::new(),
        }
    }

    fn deadline_of(&self, key: usize) -> Option<Instant> {
        match &self.exchanges.get(key)?.as_ref()?.exchange {
            Exchange::Resolving { deadline, .. } => Some(*deadline),
            Exchange::Forwarding(stream) => stream.deadline(),
            Exchange::Tunnel(tunnel) => tunnel.deadline(),
            Exchange::Answered => None,
        }
    }

    /// With no stream open, the connection idle timeout runs.
    fn idle_deadline(&self, ctx: &Ctx) -> Option<Instant> {
        if self.draining || self.exchanges.iter().any(Option::is_some) {
            return None;
        }
        ctx.config.listeners[self.listener].hcm().idle_timeout.map(|idle| self.idle_since + idle)
    }

    /// Makes sure the timer table holds this connection's next deadline.
    fn rearm(&mut self, ctx: &mut Ctx) {
        if self.closing {
            return;
        }
        let streams = (0..self.exchanges.len()).filter_map(|key| self.deadline_of(key)).min();
        let next = [streams, self.idle_deadline(ctx), self.ping_at, self.pong_by].into_iter().flatten().min();
        if let Some(at) = next {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                ctx.timers.set(at, Timer::Http(self.id));
            }
        }
    }
}
