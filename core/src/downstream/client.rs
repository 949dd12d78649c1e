//! The client side of a downstream HTTP connection, as the connection and its streams both
//! see it: which connection, listener and peer, its buffer limit, and its codec; and
//! [`Downstream`], the client as a forwarded request sees it, whatever the protocol.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::codec::http1::{BodyKind, Limits, ResponseHead};
use crate::config::{Config, HttpConnectionManager};
use crate::downstream::codec::DownstreamCodec;
use crate::downstream::ctx::Ctx;
use crate::downstream::headers::ResponseContext;
use crate::downstream::request_log::RequestLog;
use crate::io::ConnId;

pub(crate) struct Client {
    pub(crate) id: ConnId,
    pub(crate) listener: usize,
    pub(crate) peer: SocketAddr,
    pub(crate) buffer_limit: usize,
    /// Reads the requests and writes the responses.
    pub(crate) codec: DownstreamCodec,
    /// The request in progress, for the access log (when the listener has one).
    pub(crate) log: Option<Box<RequestLog>>,
}

impl Client {
    /// A client speaking HTTP/1.1, with its listener's head limits and buffer limit.
    pub(crate) fn http1(config: &Config, id: ConnId, listener: usize, peer: SocketAddr) -> Client {
        let hcm = config.listeners[listener].hcm();
        let limits = Limits::new(
            hcm.max_request_headers_kb,
            hcm.max_headers_count,
            hcm.http_protocol_options.accept_http_10,
        );
        Client {
            id,
            listener,
            peer,
            buffer_limit: config.listeners[listener].per_connection_buffer_limit_bytes as usize,
            codec: DownstreamCodec::http1(limits),
            log: None,
        }
    }

    /// Writes a response head (and body) to the client and counts it.
    pub(crate) fn send(&self, ctx: &mut Ctx, status: u16, response: Bytes) {
        let stats = &ctx.shared.http(self.listener);
        stats.response(status);
        stats.downstream_cx_tx_bytes_total.add(response.len() as u64);
        ctx.wire.write(self.id, response);
    }
}

/// The client side of one forwarded request: an HTTP/1.1 connection (one request at a time)
/// or one stream of an HTTP/2 connection. The router's [`Stream`](super::router::Stream)
/// sees only this, so one machine forwards requests whatever protocol they came in.
pub(crate) trait Downstream {
    fn conn(&self) -> ConnId;
    fn listener(&self) -> usize;
    fn peer(&self) -> SocketAddr;
    /// The watermark for what is queued towards the client, and held from it.
    fn buffer_limit(&self) -> usize;
    /// Stop reading the request body (the upstream is backed up).
    fn pause(&mut self, ctx: &mut Ctx);
    fn resume(&mut self, ctx: &mut Ctx);
    /// Response bytes queued towards the client and not yet taken.
    fn backlog(&self, ctx: &Ctx) -> usize;
    /// The interim answer to `Expect: 100-continue`, which the proxy gives itself.
    fn send_continue(&mut self, ctx: &mut Ctx);
    /// The response head, rewritten as Envoy does; counted.
    fn send_head(&mut self, ctx: &mut Ctx, head: ResponseHead, body: BodyKind, cx: &ResponseContext<'_>);
    fn send_data(&mut self, ctx: &mut Ctx, data: Bytes);
    fn send_end(&mut self, ctx: &mut Ctx);
    /// A `101` answered an upgrade: the head goes down and the connection is raw from now on
    /// (HTTP/1.1 only: an HTTP/2 stream never asks the router for an HTTP/1.1 upgrade).
    fn switch(&mut self, ctx: &mut Ctx, head: ResponseHead, cx: &ResponseContext<'_>);

    /// The connection manager config of the client's listener.
    fn hcm<'c>(&self, config: &'c Config) -> &'c HttpConnectionManager {
        config.listeners[self.listener()].hcm()
    }
}

impl Downstream for Client {
    fn conn(&self) -> ConnId {
        self.id
    }

    fn listener(&self) -> usize {
        self.listener
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn buffer_limit(&self) -> usize {
        self.buffer_limit
    }

    fn pause(&mut self, ctx: &mut Ctx) {
        ctx.wire.pause_read(self.id);
    }

    fn resume(&mut self, ctx: &mut Ctx) {
        ctx.wire.resume_read(self.id);
    }

    fn backlog(&self, ctx: &Ctx) -> usize {
        ctx.wire.queued(self.id)
    }

    fn send_continue(&mut self, ctx: &mut Ctx) {
        ctx.wire.write(self.id, self.codec.encode_continue());
    }

    fn send_head(&mut self, ctx: &mut Ctx, head: ResponseHead, body: BodyKind, cx: &ResponseContext<'_>) {
        let status = head.status;
        if let Some(log) = &mut self.log {
            log.response(status, &head.headers, cx.service_time_ms);
        }
        let bytes = self.codec.response_head(head, body, cx);
        self.send(ctx, status, bytes);
    }

    fn send_data(&mut self, ctx: &mut Ctx, data: Bytes) {
        ctx.shared.http(self.listener).downstream_cx_tx_bytes_total.add(data.len() as u64);
        if let Some(log) = &mut self.log {
            log.sent(data.len());
        }
        for piece in self.codec.encode_data(data) {
            ctx.wire.write(self.id, piece);
        }
    }

    fn send_end(&mut self, ctx: &mut Ctx) {
        if let Some(end) = self.codec.encode_end() {
            ctx.wire.write(self.id, end);
        }
    }

    fn switch(&mut self, ctx: &mut Ctx, head: ResponseHead, cx: &ResponseContext<'_>) {
        self.send_head(ctx, head, BodyKind::Tunnel, cx);
        self.codec.release();
    }
}
