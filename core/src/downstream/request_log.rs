//! What the connection manager's access log says of one request: kept only when the listener
//! has access loggers (a request without them pays one `None` check), filled in as the
//! request goes, and rendered once when it ends.

use std::net::SocketAddr;
use std::time::Instant;

use crate::access_log;
use crate::codec::http1::{Headers, RequestHead};
use crate::config::AccessLog;
use crate::downstream::ctx::Ctx;
use crate::format::{Facts, HeaderSource};

pub(crate) struct RequestLog {
    start: Instant,
    /// The request head as the client sent it.
    request: RequestHead,
    /// `%PROTOCOL%`.
    protocol: &'static str,
    /// The response head's status and fields, once sent.
    status: Option<u16>,
    response: Option<Headers>,
    /// Request body bytes read, response body bytes written.
    received: u64,
    sent: u64,
    /// Where the request went.
    upstream: Option<(usize, SocketAddr)>,
    /// Envoy's response flag, for an answer the proxy gave itself.
    flag: Option<&'static str>,
}

impl RequestLog {
    /// A log for this request if its listener logs requests.
    pub(crate) fn start(
        logs: &[AccessLog],
        now: Instant,
        request: &RequestHead,
        protocol: &'static str,
    ) -> Option<Box<RequestLog>> {
        (!logs.is_empty()).then(|| {
            Box::new(RequestLog {
                start: now,
                request: request.clone(),
                protocol,
                status: None,
                response: None,
                received: 0,
                sent: 0,
                upstream: None,
                flag: None,
            })
        })
    }

    /// The response head as it went to the client: the origin's fields and the service time
    /// the proxy added.
    pub(crate) fn response(&mut self, status: u16, headers: &Headers, service_time_ms: u128) {
        let mut headers = headers.clone();
        headers.insert("x-envoy-upstream-service-time", service_time_ms.to_string().as_bytes());
        self.status = Some(status);
        self.response = Some(headers);
    }

    /// A reply of the proxy's own: its status, and the flag that says why.
    pub(crate) fn local(&mut self, status: u16, flag: Option<&'static str>) {
        self.status = Some(status);
        self.flag = self.flag.or(flag);
    }

    pub(crate) fn received(&mut self, bytes: usize) {
        self.received += bytes as u64;
    }

    pub(crate) fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }

    pub(crate) fn upstream(&mut self, cluster: usize, addr: SocketAddr) {
        self.upstream = Some((cluster, addr));
    }

    /// The request is over: its lines go to the listener's loggers.
    pub(crate) fn write(
        &self,
        ctx: &mut Ctx,
        now: Instant,
        listener: usize,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        let config = ctx.config.clone();
        let logs = &config.listeners[listener].hcm().access_log;
        let response = self.response.as_ref().map(|h| h as &dyn HeaderSource);
        let facts = Facts {
            start: Some(ctx.clock.wall(self.start)),
            duration: Some(now.saturating_duration_since(self.start)),
            downstream_local: Some(local),
            downstream_remote: Some(peer),
            hostname: ctx.shared.hostname.as_deref(),
            request: Some(self),
            response,
            protocol: Some(self.protocol),
            response_code: Some(self.status.unwrap_or(0)),
            response_flags: self.flag.unwrap_or(""),
            bytes_received: self.received,
            bytes_sent: self.sent,
            upstream_host: self.upstream.map(|(_, addr)| addr),
            upstream_cluster: self.upstream.map(|(cluster, _)| config.clusters[cluster].name.as_str()),
            ..Facts::default()
        };
        access_log::emit(&mut ctx.wire, logs, &facts);
    }
}

/// The request's fields, and its pseudo-headers as HTTP/2 names them.
impl HeaderSource for RequestLog {
    fn header(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => Some(self.request.method.as_str().as_bytes()),
            ":path" => Some(&self.request.target),
            ":authority" => self.request.headers.get("host"),
            ":scheme" => Some(b"http"),
            _ => self.request.headers.get(name),
        }
    }
}

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }
}
