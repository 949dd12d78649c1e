//! Forwarding one HTTP/1.1 request upstream through the pool, and relaying its response.
//!
//! A [`Stream`] is the router's state for one request of a downstream connection. The request
//! head goes upstream once a pooled connection is bound; body bytes go as they are read, as
//! the same `Bytes` (chunk framing is added around them, never copied in). Until bound, or
//! while the buffer filter holds the body, they wait here, within the connection's buffer
//! limit. An upgrade request's body is the tunnel: it waits for the `101` and is then
//! spliced like a CONNECT.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::http1::response::UpEvent;
use crate::codec::http1::{self, BodyKind, Decoded, Method, RequestHead};
use crate::downstream::conn::{route_target, upgrade_token, HttpConn, State};
use crate::downstream::ctx::Ctx;
use crate::downstream::filters;
use crate::downstream::headers::{self, RequestContext, ResponseContext};
use crate::downstream::local_reply;
use crate::downstream::route::RouteIndex;
use crate::io::ConnId;
use crate::io::StreamRef;
use crate::transport::Close;
use crate::tunnel::{Closes, Tunnel};
use crate::upstream::pool::{Acquired, Failure, PoolEvent, PoolKey, Pools, Released};

pub(crate) struct Stream {
    /// This stream's name in the pool: the connection and its request number.
    pub(crate) id: StreamRef,
    key: PoolKey,
    /// The pooled connection carrying this request, once bound.
    up: Option<ConnId>,
    /// Asked the pool for a connection (pending or bound).
    requested: bool,
    /// The serialized upstream head, until it is written.
    head: Option<Bytes>,
    /// The request head, kept while the buffer filter holds the body (its length is only
    /// known at the end).
    raw_head: Option<RequestHead>,
    route: RouteIndex,
    method: Method,
    /// The request body has all been read (the codec decodes it until then).
    request_done: bool,
    /// Upstream wire bytes read but not yet sent.
    held: SmallVec<[Bytes; 4]>,
    held_len: usize,
    /// The buffer filter's limit when it holds the body until its end.
    buffering: Option<usize>,
    /// For an upgrade: what the client may send before the `101` (the buffer filter's limit).
    early_limit: Option<usize>,
    /// Re-frame the request body as chunked upstream.
    up_chunked: bool,
    upgrade: bool,
    response: Response,
    /// The client allows another request on the connection after this one.
    keep_alive: bool,
    /// The client half-closed after its request: end the connection with the response.
    down_fin: bool,
    /// The upstream allows reuse after this response.
    upstream_keep_alive: bool,
    sent_at: Option<Instant>,
    /// The route timeout, running from the end of the request.
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    last_activity: Instant,
}

enum Response {
    AwaitingHead,
    /// The head went down; the codec frames the body.
    Body,
    /// A refused upgrade: the response goes down, then both connections close.
    Refused,
}

impl Stream {
    /// The stream's next deadline: the route timeout, or the idle timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let idle = self.idle.map(|idle| self.last_activity + idle);
        match (self.deadline, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The client drained what was written to it: let the upstream be read again.
    pub(crate) fn down_flushed(&mut self, ctx: &mut Ctx, down: ConnId, limit: usize) {
        if let Some(up) = self.up {
            if ctx.wire.queued(down) <= limit / 2 {
                ctx.wire.resume_read(up);
            }
        }
    }

    /// The downstream connection is gone: give the upstream side back.
    pub(crate) fn abandon(self: Box<Self>, ctx: &mut Ctx, now: Instant) -> Option<ConnId> {
        let id = self.id;
        let key = self.key;
        match self.up {
            Some(up) => {
                ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.abandon(up, cx));
                Some(up)
            }
            None => {
                if self.requested {
                    ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.cancel(key, id, cx));
                }
                None
            }
        }
    }
}

impl HttpConn {
    fn stream(&mut self) -> &mut Stream {
        match &mut self.state {
            State::Proxying(stream) => stream,
            _ => unreachable!("no stream in progress"),
        }
    }

    /// Takes the stream out, leaving the connection between requests.
    fn take_stream(&mut self) -> Box<Stream> {
        match std::mem::replace(&mut self.state, State::Head) {
            State::Proxying(stream) => stream,
            _ => unreachable!("no stream in progress"),
        }
    }

    /// Starts forwarding a routed request to `addr`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_stream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        head: RequestHead,
        body: BodyKind,
        route: RouteIndex,
        addr: SocketAddr,
        upgrade: bool,
        keep_alive: bool,
    ) -> Closes {
        let config = ctx.config.clone();
        let hcm = self.hcm(&config);
        let route_config = route.get(&hcm.route_config);
        let target = route_target(&route_config.action).expect("a forwarded route has a cluster");
        let plan = filters::plan(hcm, upgrade_token(&head), Some(route_config));
        // An upgrade's body is the tunnel, whatever framing its head claims (Envoy U6).
        let body = if upgrade { BodyKind::Tunnel } else { body };
        if body != BodyKind::Empty && !upgrade && head.headers.contains_token("expect", "100-continue") {
            // Envoy answers `Expect: 100-continue` itself and does not forward it.
            ctx.wire.write(self.id, self.codec.encode_continue());
        }
        let buffering = if upgrade || body == BodyKind::Empty { None } else { plan.buffer_limit };
        let mut stream = Stream {
            id: StreamRef { conn: self.id, stream: self.next_stream() },
            key: PoolKey::http1(target.cluster, addr),
            up: None,
            requested: false,
            head: None,
            raw_head: None,
            route,
            method: head.method.clone(),
            request_done: body == BodyKind::Empty,
            held: SmallVec::new(),
            held_len: 0,
            buffering,
            early_limit: if upgrade { plan.buffer_limit } else { None },
            up_chunked: body == BodyKind::Chunked && buffering.is_none(),
            upgrade,
            response: Response::AwaitingHead,
            keep_alive,
            down_fin: false,
            upstream_keep_alive: true,
            sent_at: None,
            timeout: target.timeout,
            deadline: None,
            idle: target.idle_timeout.unwrap_or(hcm.stream_idle_timeout),
            last_activity: now,
        };
        if buffering.is_some() {
            stream.raw_head = Some(head);
        } else {
            let up_body = if upgrade { BodyKind::Tunnel } else { body };
            stream.head = Some(self.upstream_head(ctx, head, route, up_body, upgrade));
        }
        if stream.request_done {
            stream.deadline = stream.timeout.map(|t| now + t);
        }
        self.state = State::Proxying(Box::new(stream));
        let leftover = self.codec.start_body(body);
        if !leftover.is_empty() {
            let closes = self.stream_down_data(ctx, now, leftover);
            if !matches!(self.state, State::Proxying(_)) || !closes.is_empty() {
                return closes;
            }
        }
        if self.stream().buffering.is_none() && !self.stream().requested {
            return self.stream_acquire(ctx, now);
        }
        Vec::new()
    }

    /// The head the upstream gets for this request.
    fn upstream_head(
        &self,
        ctx: &mut Ctx,
        head: RequestHead,
        route: RouteIndex,
        body: BodyKind,
        upgrade: bool,
    ) -> Bytes {
        let config = ctx.config.clone();
        let hcm = self.hcm(&config);
        let route = route.get(&hcm.route_config);
        let target = route_target(&route.action).expect("a forwarded route has a cluster");
        let matched_prefix = match &route.matcher.path {
            crate::config::PathMatch::Prefix(prefix) => Some(prefix.as_str()),
            _ => None,
        };
        let request_id = (hcm.generate_request_id && head.headers.get("x-request-id").is_none())
            .then(|| headers::uuid4(ctx.random()));
        let cx = RequestContext {
            hcm,
            route: target,
            matched_prefix,
            peer: self.peer,
            body,
            upgrade,
            request_id: request_id.as_deref(),
        };
        headers::upstream_request(head, &cx)
    }

    /// Asks the pool for a connection.
    fn stream_acquire(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let down = self.id;
        let stream = self.stream();
        stream.requested = true;
        let (key, id) = (stream.key, stream.id);
        match ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.acquire(key, id, cx)) {
            Acquired::Bound(up) => self.stream_bound(ctx, now, up),
            Acquired::Pending => {
                // Read no further until there is somewhere to send it.
                ctx.wire.pause_read(down);
                Vec::new()
            }
            Acquired::Overflow => {
                ctx.shared.clusters[key.cluster].response(503);
                ctx.upstream_status(key.cluster, 503).inc();
                let stream = self.take_stream();
                let close = !stream.request_done || !stream.keep_alive || stream.down_fin;
                let mut closes = self.overloaded(ctx, now, close);
                if closes.is_empty() {
                    closes = self.resume_after_stream(ctx, now);
                }
                closes
            }
        }
    }

    /// A pooled connection is ours: send the head and whatever body waited.
    fn stream_bound(&mut self, ctx: &mut Ctx, now: Instant, up: ConnId) -> Closes {
        let down = self.id;
        let limit = self.buffer_limit;
        let stream = self.stream();
        stream.up = Some(up);
        stream.sent_at = Some(now);
        stream.last_activity = now;
        let cluster = stream.key.cluster;
        ctx.pools.expect_response(up, stream.method.clone());
        let head = stream.head.take().expect("the head is ready when binding");
        let mut out = vec![head];
        if !stream.upgrade {
            out.extend(stream.held.drain(..));
            stream.held_len = 0;
        }
        let sent: usize = out.iter().map(Bytes::len).sum();
        for data in out {
            ctx.wire.write(up, data);
        }
        ctx.shared.clusters[cluster].upstream_cx_tx_bytes_total.add(sent as u64);
        if ctx.wire.queued(up) <= limit && !stream.request_done && stream.held_len < limit {
            ctx.wire.resume_read(down);
        }
        Vec::new()
    }

    /// Bytes from the client while a stream is in progress.
    pub(crate) fn stream_down_data(&mut self, ctx: &mut Ctx, now: Instant, mut data: Bytes) -> Closes {
        let down = self.id;
        self.stream().last_activity = now;
        loop {
            let Some(decoded) = self.codec.decode_body(&mut data) else {
                // Read ahead of the current request: it waits, and so does reading.
                self.codec.read_ahead(&data);
                ctx.wire.pause_read(down);
                return Vec::new();
            };
            match decoded {
                Ok(Decoded::Data(chunk)) => {
                    if let Some(status) = self.push_body(ctx, chunk) {
                        return self.stream_local_reply(ctx, now, status.0, status.1);
                    }
                }
                Ok(Decoded::NeedMore) => return Vec::new(),
                Ok(Decoded::End) => {
                    let stream = self.stream();
                    stream.request_done = true;
                    stream.deadline = stream.timeout.map(|t| now + t);
                    if stream.up_chunked {
                        self.push_wire(ctx, http1::last_chunk());
                    }
                    if !data.is_empty() {
                        self.codec.read_ahead(&data);
                        ctx.wire.pause_read(down);
                    }
                    if self.stream().buffering.is_some() {
                        return self.end_buffering(ctx, now);
                    }
                    return Vec::new();
                }
                Err(error) => {
                    ctx.shared.http[self.listener].downstream_cx_protocol_error.inc();
                    return self.stream_local_reply(
                        ctx,
                        now,
                        error.status(),
                        http1::reason_phrase(error.status()),
                    );
                }
            }
        }
    }

    /// One piece of request body; returns a local reply to send instead, if the chain says so.
    fn push_body(&mut self, ctx: &mut Ctx, chunk: Bytes) -> Option<(u16, &'static str)> {
        let (down, limit) = (self.id, self.buffer_limit);
        let stream = self.stream();
        if matches!(stream.response, Response::Refused) {
            // Envoy U7: what the client sends for a refused upgrade is dropped, early or late;
            // it must not count against a buffer limit and cut the refusal short.
            return None;
        }
        if stream.upgrade || stream.buffering.is_some() {
            let cap = if stream.upgrade { stream.early_limit } else { stream.buffering };
            stream.held_len += chunk.len();
            stream.held.push(chunk);
            if cap.is_some_and(|cap| stream.held_len > cap) {
                return Some((413, "Payload Too Large"));
            }
            if stream.held_len >= limit && stream.buffering.is_none() {
                ctx.wire.pause_read(down);
            }
            return None;
        }
        if stream.up_chunked {
            let mut framed: SmallVec<[Bytes; 3]> = SmallVec::new();
            http1::encode_chunk(chunk, &mut framed);
            for piece in framed {
                self.push_wire(ctx, piece);
            }
        } else {
            self.push_wire(ctx, chunk);
        }
        None
    }

    /// Upstream wire bytes of the request: written if bound, held otherwise.
    fn push_wire(&mut self, ctx: &mut Ctx, data: Bytes) {
        let down = self.id;
        let limit = self.buffer_limit;
        let stream = self.stream();
        match stream.up {
            Some(up) if stream.head.is_none() => {
                ctx.shared.clusters[stream.key.cluster].upstream_cx_tx_bytes_total.add(data.len() as u64);
                ctx.wire.write(up, data);
                if ctx.wire.queued(up) > limit {
                    ctx.wire.pause_read(down);
                }
            }
            _ => {
                stream.held_len += data.len();
                stream.held.push(data);
                if stream.held_len >= limit {
                    ctx.wire.pause_read(down);
                }
            }
        }
    }

    /// The buffer filter has the whole body: forward it with its length.
    fn end_buffering(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let stream = self.stream();
        let head = stream.raw_head.take().expect("buffered request head");
        let length = stream.held_len as u64;
        let route = stream.route;
        let mut head = head;
        head.headers.remove("transfer-encoding");
        head.headers.insert("content-length", length.to_string().as_bytes());
        let body = if length == 0 { BodyKind::Empty } else { BodyKind::Length(length) };
        let bytes = self.upstream_head(ctx, head, route, body, false);
        let stream = self.stream();
        stream.head = Some(bytes);
        stream.buffering = None;
        self.stream_acquire(ctx, now)
    }

    /// A local reply ends the stream: the upstream side is given back or cancelled.
    /// A local reply standing in for the upstream's response (a reset, a timeout): it is
    /// counted in the cluster's `upstream_rq_<code>` stats too, as Envoy's router does.
    fn upstream_failure_reply(&mut self, ctx: &mut Ctx, now: Instant, status: u16, body: &str) -> Closes {
        let cluster = self.stream().key.cluster;
        ctx.shared.clusters[cluster].response(status);
        ctx.upstream_status(cluster, status).inc();
        self.stream_local_reply(ctx, now, status, body)
    }

    fn stream_local_reply(&mut self, ctx: &mut Ctx, now: Instant, status: u16, body: &str) -> Closes {
        if !matches!(self.stream().response, Response::AwaitingHead) {
            // A response is already on its way: a second head would corrupt it, so the
            // connection ends instead, with a reset after what was sent, so the client cannot
            // take the cut response for a whole one.
            let stream = self.take_stream();
            let mut closes = self.close(Close::FlushThenReset);
            closes.extend(stream.abandon(ctx, now).map(|up| (up, Close::Abort)));
            return closes;
        }
        let stream = self.take_stream();
        let close = !stream.request_done || !stream.keep_alive || stream.down_fin;
        let mut closes = Vec::new();
        if let Some(up) = stream.abandon(ctx, now) {
            closes.push((up, Close::Abort));
        }
        closes.extend(self.reply(ctx, now, status, body, close));
        if closes.iter().all(|(id, _)| *id != self.id) {
            closes.extend(self.resume_after_stream(ctx, now));
        }
        closes
    }

    /// Between requests again: read on, and answer what was read ahead. The next request's
    /// stream starts now (as in Envoy, a pipelined request waits for the one before it), and
    /// so do its stream idle timeout and the connection idle timeout.
    fn resume_after_stream(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        self.last_activity = now;
        ctx.wire.resume_read(self.id);
        self.next_request(ctx, now)
    }

    /// The client closed (FIN, or reset) during a stream.
    pub(crate) fn stream_down_closed(&mut self, ctx: &mut Ctx, now: Instant, reset: bool) -> Closes {
        let stream = self.stream();
        if !reset && stream.request_done && !stream.upgrade {
            // A client may half-close once its request is sent; the response still goes out.
            stream.down_fin = true;
            return Vec::new();
        }
        let stream = self.take_stream();
        let mut closes = vec![(self.id, if reset { Close::Abort } else { Close::Flush })];
        if let Some(up) = stream.abandon(ctx, now) {
            closes.push((up, Close::Abort));
        }
        self.state = State::Closing;
        closes
    }

    /// The pool's word on this connection's request.
    pub(crate) fn stream_pool_event(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        stream: u32,
        event: PoolEvent,
    ) -> Closes {
        if !matches!(&self.state, State::Proxying(s) if s.id.stream == stream) {
            return match event {
                // Bound to a request that has gone: hand the connection back.
                PoolEvent::Bound(up) => ctx.give_back(up, now),
                _ => Vec::new(),
            };
        }
        match event {
            PoolEvent::Bound(up) => self.stream_bound(ctx, now, up),
            PoolEvent::Failed(failure) => {
                self.stream().requested = false;
                let body = match failure {
                    Failure::ConnectFailed => local_reply::CONNECT_FAILURE,
                    Failure::ConnectTimeout => local_reply::CONNECT_TIMEOUT,
                };
                self.upstream_failure_reply(ctx, now, 503, body)
            }
            PoolEvent::Response(events) => {
                let mut closes = Vec::new();
                for event in events {
                    if !matches!(self.state, State::Proxying(_)) {
                        // Upgraded: what followed the `101` belongs to the tunnel.
                        if let (State::Tunnel(tunnel), UpEvent::Upgraded(rest) | UpEvent::Data(rest)) =
                            (&mut self.state, event)
                        {
                            if !rest.is_empty() {
                                let stats = &ctx.shared.clusters[tunnel.cluster];
                                tunnel.up_data(&mut ctx.wire, stats, now, rest);
                            }
                        }
                        continue;
                    }
                    closes.extend(self.on_response_event(ctx, now, event));
                }
                closes
            }
            PoolEvent::UpstreamFlushed => {
                let limit = self.buffer_limit;
                let down = self.id;
                let stream = self.stream();
                if let Some(up) = stream.up {
                    if ctx.wire.queued(up) <= limit / 2 && stream.held_len < limit && !stream.request_done {
                        ctx.wire.resume_read(down);
                    }
                }
                Vec::new()
            }
            PoolEvent::UpstreamGone => {
                let stream = self.stream();
                stream.up = None;
                stream.requested = false;
                if matches!(stream.response, Response::AwaitingHead) {
                    self.upstream_failure_reply(ctx, now, 503, local_reply::CONNECTION_TERMINATION)
                } else {
                    // The response is cut short: the client must not take it for complete.
                    self.take_stream();
                    self.close(Close::FlushThenReset)
                }
            }
        }
    }

    fn on_response_event(&mut self, ctx: &mut Ctx, now: Instant, event: UpEvent) -> Closes {
        let down = self.id;
        let limit = self.buffer_limit;
        self.stream().last_activity = now;
        match event {
            UpEvent::Head(head, kind) => self.on_response_head(ctx, now, *head, kind),
            UpEvent::Data(data) => {
                let stream = self.stream();
                let cluster = stream.key.cluster;
                if matches!(stream.response, Response::AwaitingHead) {
                    return Vec::new();
                }
                ctx.shared.clusters[cluster].upstream_cx_rx_bytes_total.add(data.len() as u64);
                ctx.shared.http[self.listener].downstream_cx_tx_bytes_total.add(data.len() as u64);
                for piece in self.codec.encode_data(data) {
                    ctx.wire.write(down, piece);
                }
                if ctx.wire.queued(down) > limit {
                    if let Some(up) = self.stream().up {
                        ctx.wire.pause_read(up);
                    }
                }
                Vec::new()
            }
            UpEvent::End => self.on_response_end(ctx, now),
            UpEvent::Upgraded(_) => Vec::new(),
            UpEvent::Error => {
                let stream = self.stream();
                ctx.shared.clusters[stream.key.cluster].upstream_cx_protocol_error.inc();
                if matches!(stream.response, Response::AwaitingHead) {
                    self.upstream_failure_reply(ctx, now, 503, local_reply::PROTOCOL_ERROR)
                } else {
                    let stream = self.take_stream();
                    let mut closes = self.close(Close::FlushThenReset);
                    closes.extend(stream.abandon(ctx, now).map(|up| (up, Close::Abort)));
                    closes
                }
            }
        }
    }

    fn on_response_head(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        head: http1::ResponseHead,
        kind: BodyKind,
    ) -> Closes {
        let draining = ctx.draining();
        let config = ctx.config.clone();
        let server_name = self.hcm(&config).server_name.clone();
        let stream = self.stream();
        let status = head.status;
        let cluster = stream.key.cluster;
        ctx.shared.clusters[cluster].response(status);
        ctx.upstream_status(cluster, status).inc();
        let elapsed = stream.sent_at.map_or(0, |at| now.saturating_duration_since(at).as_millis());
        stream.upstream_keep_alive =
            head.keep_alive() && !head.headers.contains_token("proxy-connection", "close");
        if !stream.upstream_keep_alive {
            ctx.shared.clusters[cluster].upstream_cx_close_notify.inc();
        }
        if stream.upgrade && status == 101 {
            return self.switch_protocols(ctx, now, head, elapsed, &server_name);
        }
        // The route timeout covers the response head; the stream idle timeout the rest.
        stream.deadline = None;
        let close = !stream.keep_alive || stream.down_fin || draining || stream.upgrade;
        let upgrade = stream.upgrade;
        stream.response = if upgrade {
            // Envoy U7: the upstream refused the upgrade; what the client sent early is dropped.
            stream.held.clear();
            stream.held_len = 0;
            Response::Refused
        } else {
            Response::Body
        };
        let cx = ResponseContext {
            upgrade_request: upgrade,
            server_name: &server_name,
            service_time_ms: elapsed,
            close,
        };
        let bytes = self.codec.response_head(head, kind, &cx);
        self.send(ctx, status, bytes);
        Vec::new()
    }

    /// A `101`: the stream becomes a tunnel over the same upstream connection.
    fn switch_protocols(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        head: http1::ResponseHead,
        elapsed: u128,
        server_name: &str,
    ) -> Closes {
        let down = self.id;
        let stream = self.take_stream();
        let up = stream.up.expect("a response comes on a bound connection");
        let cluster = stream.key.cluster;
        ctx.with_pool(cluster, now, |pools: &mut Pools, cx| pools.detach(up, cx));
        ctx.adopt_upstream(up, down, cluster);
        let cx =
            ResponseContext { upgrade_request: true, server_name, service_time_ms: elapsed, close: false };
        let bytes = self.codec.response_head(head, BodyKind::Tunnel, &cx);
        self.send(ctx, 101, bytes);
        self.codec.release();
        let limits = (self.buffer_limit, ctx.clusters.buffer_limit(cluster));
        let mut tunnel = Tunnel::open(now, (down, up), cluster, limits, stream.idle);
        let stats = &ctx.shared.clusters[cluster];
        for data in stream.held {
            tunnel.down_data(&mut ctx.wire, stats, now, data);
        }
        if stream.down_fin {
            let _ = tunnel.down_read_closed(&mut ctx.wire);
        }
        tunnel.read_down_if_room(&mut ctx.wire);
        self.state = State::Tunnel(tunnel);
        Vec::new()
    }

    fn on_response_end(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let down = self.id;
        let stream = self.take_stream();
        let up = stream.up.expect("a response comes on a bound connection");
        let refused = matches!(stream.response, Response::Refused);
        if let Some(end) = self.codec.encode_end() {
            ctx.wire.write(down, end);
        }
        ctx.shared.clusters[stream.key.cluster].upstream_rq_completed.inc();
        self.end_request(ctx);
        let reusable = stream.request_done && stream.upstream_keep_alive && !refused;
        // The response may have paused the upstream (a slow client); its next user must find
        // it reading.
        ctx.wire.resume_read(up);
        let mut closes = Vec::new();
        match ctx.with_pool(stream.key.cluster, now, |pools: &mut Pools, cx| pools.release(up, reusable, cx))
        {
            Released::Rebound { waiter } => ctx.defer(waiter, PoolEvent::Bound(up)),
            Released::Idle => {}
            Released::Close => closes.push((up, Close::Flush)),
        }
        if !stream.request_done || !stream.keep_alive || stream.down_fin || refused || ctx.draining() {
            closes.extend(self.close(Close::Flush));
            return closes;
        }
        closes.extend(self.resume_after_stream(ctx, now));
        closes
    }

    /// A stream deadline passed: the route timeout (504) or the stream idle timeout.
    pub(crate) fn stream_timer(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        let stream = self.stream();
        let cluster = stream.key.cluster;
        let timed_out = stream.deadline.is_some_and(|at| at <= now);
        let idle = stream.idle.is_some_and(|idle| stream.last_activity + idle <= now);
        if !timed_out && !idle {
            return Vec::new();
        }
        let awaiting = matches!(stream.response, Response::AwaitingHead);
        if timed_out {
            ctx.shared.clusters[cluster].upstream_rq_timeout.inc();
        } else {
            ctx.shared.http[self.listener].downstream_rq_idle_timeout.inc();
        }
        if awaiting {
            let (status, body) =
                if timed_out { (504, local_reply::UPSTREAM_TIMEOUT) } else { (408, "stream timeout") };
            return if timed_out {
                self.upstream_failure_reply(ctx, now, status, body)
            } else {
                self.stream_local_reply(ctx, now, status, body)
            };
        }
        // The response has started: it is cut, and the client sees the cut as a reset.
        let stream = self.take_stream();
        let mut closes = self.close(Close::FlushThenReset);
        closes.extend(stream.abandon(ctx, now).map(|up| (up, Close::Abort)));
        closes
    }
}
