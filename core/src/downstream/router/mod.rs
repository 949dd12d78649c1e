//! Forwarding one request upstream through the pool, and relaying its response
//! (`response.rs`).
//!
//! A [`Stream`] is the router's machine for one request of a downstream connection. It sees
//! its client only as a [`Downstream`] (an HTTP/1.1 connection, or one HTTP/2 stream) and says
//! how it ended as an [`Ended`] value, which the connection acts on. The request
//! head goes upstream once a pooled connection is bound; body bytes go as they are read, as
//! the same `Bytes` (chunk framing is added around them, never copied in). Until bound, or
//! while the buffer filter holds the body, they wait here, within the connection's buffer
//! limit. An upgrade request's body is the tunnel: it waits for the `101` (or a proxied
//! CONNECT's 2xx) and is then spliced like a terminated CONNECT. The head goes to an HTTP/2
//! upstream as an HTTP/2 head on its own stream, and a stream the upstream refused is sent
//! again.

mod response;

pub(crate) use response::Switched;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::http1::{self, BodyKind, Method, RequestHead};
use crate::codec::LocalReply;
use crate::config::UpstreamProtocol;
use crate::downstream::client::Downstream;
use crate::downstream::ctx::Ctx;
use crate::downstream::filters;
use crate::downstream::headers::{self, RequestContext};
use crate::downstream::local_reply;
use crate::downstream::route::RouteIndex;
use crate::downstream::upgrade::upgrade_token;
use crate::io::{ConnId, StreamRef};
use crate::transport::Close;
use crate::upstream::pool::{Acquired, PoolKey, Pools, Protocol};

pub(crate) struct Stream {
    /// This stream's name in the pool: the connection and its request number.
    pub(crate) id: StreamRef,
    key: PoolKey,
    /// The pooled connection carrying this request, once bound.
    up: Option<ConnId>,
    /// Asked the pool for a connection (pending or bound).
    requested: bool,
    /// The upstream head, until it is sent.
    head: Option<UpHead>,
    /// A bodiless request's HTTP/2 head, kept to send again elsewhere if the upstream refuses
    /// the stream (REFUSED_STREAM, or a GOAWAY that left it out).
    retry: Option<Box<http::Request<()>>>,
    retries: u8,
    /// The request head, kept while the buffer filter holds the body (its length is only
    /// known at the end); boxed, as only buffered requests need it.
    raw_head: Option<Box<RequestHead>>,
    route: RouteIndex,
    method: Method,
    /// The request body has all been read (the codec decodes it until then).
    request_done: bool,
    /// Upstream wire bytes read but not yet sent (one inline: a body that came with its head;
    /// more is rare, and an exchange stays small).
    held: SmallVec<[Bytes; 1]>,
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

/// The request head as the upstream's protocol sends it.
enum UpHead {
    Http1(Bytes),
    Http2(Box<http::Request<()>>),
}

/// How many times a refused HTTP/2 stream is sent again before the client gets a 503.
const MAX_RETRIES: u8 = 5;

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
    pub(crate) fn down_flushed(&self, down: &impl Downstream, ctx: &mut Ctx, now: Instant) {
        if down.backlog(ctx) <= down.buffer_limit() / 2 {
            self.read_upstream(ctx, now, true);
        }
    }

    /// Reads the response on (or holds it back), as far as the client takes it: the whole
    /// HTTP/1.1 connection, or this request's HTTP/2 stream window.
    fn read_upstream(&self, ctx: &mut Ctx, now: Instant, read: bool) {
        let Some(up) = self.up else { return };
        match self.key.protocol {
            Protocol::Http1 if read => {
                ctx.wire.resume_read(up);
            }
            Protocol::Http1 => {
                ctx.wire.pause_read(up);
            }
            Protocol::Http2 => {
                let id = self.id;
                ctx.with_pool(self.key.cluster, now, |p: &mut Pools, cx| p.pause_stream(up, id, !read, cx));
            }
        }
    }

    /// Request bytes sent upstream and not yet taken.
    fn up_queued(&self, ctx: &Ctx, up: ConnId) -> usize {
        match self.key.protocol {
            Protocol::Http1 => ctx.wire.queued(up),
            Protocol::Http2 => ctx.pools.queued(up, self.id),
        }
    }

    /// The stream ends before its response did: give the upstream side back; returns the
    /// upstream connection it was bound to.
    pub(crate) fn abandon(&mut self, ctx: &mut Ctx, now: Instant) -> Option<ConnId> {
        let id = self.id;
        let key = self.key;
        match self.up.take() {
            Some(up) => {
                let close =
                    ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.abandon(up, id, cx));
                close.then_some(up)
            }
            None => {
                if std::mem::take(&mut self.requested) {
                    ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.cancel(key, id, cx));
                }
                None
            }
        }
    }
}

/// How a stream ended, for its connection to act on. The stream has settled its upstream
/// side; `up` is the upstream connection to close, if any.
pub(crate) struct Ended {
    pub(crate) end: End,
    pub(crate) up: Option<(ConnId, Close)>,
}

pub(crate) enum End {
    /// The connection answers in place of a response, then closes (if `close`) or reads on.
    Reply { reply: LocalReply<'static>, close: bool },
    /// The response went to the client whole.
    Complete { close: bool },
    /// The connection ends with this close: the response was cut short, or the client left.
    Cut(Close),
    /// A `101`: the connection opens the tunnel in the stream's place.
    Upgraded(Switched),
}

impl Ended {
    fn cut(close: Close, up: Option<ConnId>) -> Option<Ended> {
        Some(Ended { end: End::Cut(close), up: up.map(|up| (up, Close::Abort)) })
    }
}

impl Stream {
    /// A routed request to forward to `addr`. Its body comes as the codec reads it; the pool
    /// is asked for a connection at [`Self::go`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        id: StreamRef,
        head: RequestHead,
        body: BodyKind,
        route: RouteIndex,
        addr: SocketAddr,
        upgrade: bool,
        keep_alive: bool,
    ) -> Stream {
        let config = ctx.config.clone();
        let hcm = client.hcm(&config);
        let route_config = route.get(&hcm.route_config);
        let target = route_config.action.target().expect("a forwarded route has a cluster");
        let plan = filters::plan(hcm, upgrade_token(&head), Some(route_config));
        let protocol = match config.clusters[target.cluster].protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2(_) => Protocol::Http2,
        };
        // An upgrade's body is the tunnel, whatever framing its head claims (Envoy U6).
        let body = if upgrade { BodyKind::Tunnel } else { body };
        if body != BodyKind::Empty && !upgrade && head.headers.contains_token("expect", "100-continue") {
            // Envoy answers `Expect: 100-continue` itself and does not forward it.
            client.send_continue(ctx);
        }
        let buffering = if upgrade || body == BodyKind::Empty { None } else { plan.buffer_limit };
        let mut stream = Stream {
            id,
            key: PoolKey::plain(target.cluster, addr, protocol),
            up: None,
            requested: false,
            head: None,
            retry: None,
            retries: 0,
            raw_head: None,
            route,
            method: head.method.clone(),
            request_done: false,
            held: SmallVec::new(),
            held_len: 0,
            buffering,
            early_limit: if upgrade { plan.buffer_limit } else { None },
            up_chunked: body == BodyKind::Chunked && buffering.is_none() && protocol == Protocol::Http1,
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
            stream.raw_head = Some(Box::new(head));
        } else {
            stream.head = Some(upstream_head(client, ctx, head, route, body, upgrade, protocol));
        }
        stream
    }

    /// The request may go: ask the pool for a connection, unless asked already or the buffer
    /// filter holds the request until its end.
    pub(crate) fn go(&mut self, client: &mut impl Downstream, ctx: &mut Ctx, now: Instant) -> Option<Ended> {
        if self.buffering.is_some() || self.requested {
            return None;
        }
        self.acquire(client, ctx, now)
    }

    /// Asks the pool for a connection.
    fn acquire(&mut self, client: &mut impl Downstream, ctx: &mut Ctx, now: Instant) -> Option<Ended> {
        self.requested = true;
        let (key, id) = (self.key, self.id);
        match ctx.with_pool(key.cluster, now, |pools: &mut Pools, cx| pools.acquire(key, id, cx)) {
            Acquired::Bound(up) => self.bound(client, ctx, now, up),
            Acquired::Pending => {
                // Read no further until there is somewhere to send it.
                client.pause(ctx);
                None
            }
            Acquired::Overflow => {
                ctx.shared.clusters[key.cluster].response(503);
                ctx.upstream_status(key.cluster, 503).inc();
                let close = !self.request_done || !self.keep_alive || self.down_fin;
                Some(Ended { end: End::Reply { reply: local_reply::overloaded(), close }, up: None })
            }
        }
    }

    /// A pooled connection is ours: send the head and whatever body waited.
    fn bound(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        up: ConnId,
    ) -> Option<Ended> {
        let limit = client.buffer_limit();
        self.up = Some(up);
        self.sent_at = Some(now);
        self.last_activity = now;
        let cluster = self.key.cluster;
        match self.head.take().expect("the head is ready when binding") {
            UpHead::Http1(head) => {
                ctx.pools.expect_response(up, self.method.clone());
                let mut out = vec![head];
                if !self.upgrade {
                    out.extend(self.held.drain(..));
                    self.held_len = 0;
                }
                let sent: usize = out.iter().map(Bytes::len).sum();
                for data in out {
                    ctx.wire.write(up, data);
                }
                ctx.shared.clusters[cluster].upstream_cx_tx_bytes_total.add(sent as u64);
            }
            UpHead::Http2(request) => {
                let end = !self.upgrade && self.request_done && self.held.is_empty();
                // A bodiless request can go again if the upstream did nothing with it.
                self.retry = end.then(|| request.clone());
                let id = self.id;
                // A tunnel's early bytes wait for its 2xx.
                let held: SmallVec<[Bytes; 1]> =
                    if self.upgrade { SmallVec::new() } else { self.held.drain(..).collect() };
                if !self.upgrade {
                    self.held_len = 0;
                }
                let (request_done, upgrade) = (self.request_done, self.upgrade);
                let opened = ctx.with_pool(cluster, now, |p: &mut Pools, cx| {
                    if !p.open_stream(up, id, *request, end, cx) {
                        return false;
                    }
                    for data in held {
                        p.send_data(up, id, data, cx);
                    }
                    if request_done && !end && !upgrade {
                        p.send_end(up, id, cx);
                    }
                    true
                });
                if !opened {
                    // The connection went away between binding and sending: try again.
                    self.up = None;
                    return self.send_again(client, ctx, now);
                }
            }
        }
        if self.up_queued(ctx, up) <= limit && !self.request_done && self.held_len < limit {
            client.resume(ctx);
        }
        None
    }

    /// The upstream did nothing with the request (an HTTP/2 stream refused, or left out by a
    /// GOAWAY): a bodiless request goes again, on another stream or connection, a few times
    /// before the client is told.
    fn send_again(&mut self, client: &mut impl Downstream, ctx: &mut Ctx, now: Instant) -> Option<Ended> {
        self.requested = false;
        match self.retry.take() {
            Some(request) if self.retries < MAX_RETRIES => {
                self.retries += 1;
                ctx.shared.clusters[self.key.cluster].upstream_rq_retry.inc();
                self.head = Some(UpHead::Http2(request));
                self.acquire(client, ctx, now)
            }
            _ => self.upstream_failure_reply(ctx, now, 503, local_reply::REFUSED_STREAM),
        }
    }

    /// The client sent bytes (this request's, or ahead of the next): the stream is not idle.
    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// A piece of the request body.
    pub(crate) fn body_data(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        chunk: Bytes,
    ) -> Option<Ended> {
        self.last_activity = now;
        let (status, body) = self.push_body(client, ctx, now, chunk)?;
        self.local_reply(ctx, now, status, body)
    }

    /// The request is complete: the route timeout starts.
    pub(crate) fn body_end(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
    ) -> Option<Ended> {
        self.last_activity = now;
        self.request_done = true;
        self.deadline = self.timeout.map(|t| now + t);
        if self.up_chunked {
            self.push_wire(client, ctx, now, http1::last_chunk());
        }
        if let (Some(up), None, Protocol::Http2) = (self.up, &self.head, self.key.protocol) {
            let id = self.id;
            ctx.with_pool(self.key.cluster, now, |p: &mut Pools, cx| p.send_end(up, id, cx));
        }
        if self.buffering.is_some() {
            return self.end_buffering(client, ctx, now);
        }
        None
    }

    /// The request broke the protocol (its body's framing): answered with `status` in place
    /// of a response, or cut if the response has started.
    pub(crate) fn refuse(&mut self, ctx: &mut Ctx, now: Instant, status: u16) -> Option<Ended> {
        self.local_reply(ctx, now, status, http1::reason_phrase(status))
    }

    /// One piece of request body; returns a local reply to send instead, if the chain says so.
    fn push_body(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        chunk: Bytes,
    ) -> Option<(u16, &'static str)> {
        let limit = client.buffer_limit();
        if matches!(self.response, Response::Refused) {
            // Envoy U7: what the client sends for a refused upgrade is dropped, early or late;
            // it must not count against a buffer limit and cut the refusal short.
            return None;
        }
        if self.upgrade || self.buffering.is_some() {
            let cap = if self.upgrade { self.early_limit } else { self.buffering };
            self.held_len += chunk.len();
            self.held.push(chunk);
            if cap.is_some_and(|cap| self.held_len > cap) {
                return Some((413, "Payload Too Large"));
            }
            if self.held_len >= limit && self.buffering.is_none() {
                client.pause(ctx);
            }
            return None;
        }
        if self.up_chunked {
            let mut framed: SmallVec<[Bytes; 3]> = SmallVec::new();
            http1::encode_chunk(chunk, &mut framed);
            for piece in framed {
                self.push_wire(client, ctx, now, piece);
            }
        } else {
            self.push_wire(client, ctx, now, chunk);
        }
        None
    }

    /// Upstream wire bytes of the request: written if bound, held otherwise.
    fn push_wire(&mut self, client: &mut impl Downstream, ctx: &mut Ctx, now: Instant, data: Bytes) {
        let limit = client.buffer_limit();
        match self.up {
            Some(up) if self.head.is_none() => {
                let cluster = self.key.cluster;
                match self.key.protocol {
                    Protocol::Http1 => {
                        ctx.shared.clusters[cluster].upstream_cx_tx_bytes_total.add(data.len() as u64);
                        ctx.wire.write(up, data);
                    }
                    // Counted as wire bytes when h2 writes them.
                    Protocol::Http2 => {
                        let id = self.id;
                        ctx.with_pool(cluster, now, |p: &mut Pools, cx| p.send_data(up, id, data, cx));
                    }
                }
                if self.up_queued(ctx, up) > limit {
                    client.pause(ctx);
                }
            }
            _ => {
                self.held_len += data.len();
                self.held.push(data);
                if self.held_len >= limit {
                    client.pause(ctx);
                }
            }
        }
    }

    /// The buffer filter has the whole body: forward it with its length.
    fn end_buffering(&mut self, client: &mut impl Downstream, ctx: &mut Ctx, now: Instant) -> Option<Ended> {
        let mut head = self.raw_head.take().expect("buffered request head");
        let length = self.held_len as u64;
        head.headers.remove("transfer-encoding");
        head.headers.insert("content-length", length.to_string().as_bytes());
        let body = if length == 0 { BodyKind::Empty } else { BodyKind::Length(length) };
        self.head = Some(upstream_head(client, ctx, *head, self.route, body, false, self.key.protocol));
        self.buffering = None;
        self.acquire(client, ctx, now)
    }

    /// A local reply standing in for the upstream's response (a reset, a timeout): it is
    /// counted in the cluster's `upstream_rq_<code>` stats too, as Envoy's router does.
    fn upstream_failure_reply(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        status: u16,
        body: &'static str,
    ) -> Option<Ended> {
        let cluster = self.key.cluster;
        ctx.shared.clusters[cluster].response(status);
        ctx.upstream_status(cluster, status).inc();
        self.local_reply(ctx, now, status, body)
    }

    /// A local reply ends the stream: the upstream side is given back or cancelled.
    fn local_reply(&mut self, ctx: &mut Ctx, now: Instant, status: u16, body: &'static str) -> Option<Ended> {
        if !matches!(self.response, Response::AwaitingHead) {
            // A response is already on its way: a second head would corrupt it, so the
            // connection ends instead, with a reset after what was sent, so the client cannot
            // take the cut response for a whole one.
            return Ended::cut(Close::FlushThenReset, self.abandon(ctx, now));
        }
        let close = !self.request_done || !self.keep_alive || self.down_fin;
        let up = self.abandon(ctx, now).map(|up| (up, Close::Abort));
        Some(Ended { end: End::Reply { reply: local_reply::text(status, body), close }, up })
    }

    /// The client closed (FIN, or reset) during this stream.
    pub(crate) fn down_closed(&mut self, ctx: &mut Ctx, now: Instant, reset: bool) -> Option<Ended> {
        if !reset && self.request_done && !self.upgrade {
            // A client may half-close once its request is sent; the response still goes out.
            self.down_fin = true;
            return None;
        }
        Ended::cut(if reset { Close::Abort } else { Close::Flush }, self.abandon(ctx, now))
    }

    /// A deadline of this stream passed: the route timeout (504) or the stream idle timeout.
    pub(crate) fn on_timer(
        &mut self,
        client: &impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
    ) -> Option<Ended> {
        let timed_out = self.deadline.is_some_and(|at| at <= now);
        let idle = self.idle.is_some_and(|idle| self.last_activity + idle <= now);
        if !timed_out && !idle {
            return None;
        }
        if timed_out {
            ctx.shared.clusters[self.key.cluster].upstream_rq_timeout.inc();
        } else {
            ctx.shared.http(client.listener()).downstream_rq_idle_timeout.inc();
        }
        if !matches!(self.response, Response::AwaitingHead) {
            // The response has started: it is cut, and the client sees the cut as a reset.
            return Ended::cut(Close::FlushThenReset, self.abandon(ctx, now));
        }
        if timed_out {
            self.upstream_failure_reply(ctx, now, 504, local_reply::UPSTREAM_TIMEOUT)
        } else {
            self.local_reply(ctx, now, 408, "stream timeout")
        }
    }
}

/// The head the upstream gets for this request.
fn upstream_head(
    client: &impl Downstream,
    ctx: &mut Ctx,
    head: RequestHead,
    route: RouteIndex,
    body: BodyKind,
    upgrade: bool,
    protocol: Protocol,
) -> UpHead {
    let generate_id =
        client.hcm(&ctx.config).generate_request_id && head.headers.get("x-request-id").is_none();
    let request_id = generate_id.then(|| headers::uuid4(ctx.random()));
    let hcm = client.hcm(&ctx.config);
    let route = route.get(&hcm.route_config);
    let target = route.action.target().expect("a forwarded route has a cluster");
    let matched_prefix = match &route.matcher.path {
        crate::config::PathMatch::Prefix(prefix) => Some(prefix.as_str()),
        _ => None,
    };
    let cx = RequestContext {
        hcm,
        route: target,
        matched_prefix,
        peer: client.peer(),
        body,
        upgrade,
        request_id: request_id.as_deref(),
    };
    match protocol {
        Protocol::Http1 => UpHead::Http1(headers::upstream_request(head, &cx)),
        Protocol::Http2 => UpHead::Http2(Box::new(headers::upstream_request_h2(head, &cx))),
    }
}
