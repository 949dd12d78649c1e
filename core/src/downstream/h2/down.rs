//! One HTTP/2 stream as the router's [`Stream`](crate::downstream::router::Stream) sees its
//! client, and the translations between HTTP/2 messages and the heads the proxy works with.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use crate::codec::h2::ServerCodec;
use crate::codec::http1::{BodyKind, Headers, Method, RequestHead, ResponseHead, Version};
use crate::codec::LocalReply;
use crate::downstream::client::Downstream;
use crate::downstream::ctx::Ctx;
use crate::downstream::headers::{forwarded_response_fields, ResponseContext};
use crate::downstream::request_log::RequestLog;
use crate::io::ConnId;

pub(super) struct H2Down<'a> {
    pub(super) codec: &'a mut ServerCodec,
    pub(super) key: usize,
    pub(super) conn: ConnId,
    pub(super) listener: usize,
    pub(super) peer: SocketAddr,
    pub(super) buffer_limit: usize,
    /// The stream's access log record, if its listener logs.
    pub(super) log: Option<&'a mut RequestLog>,
}

impl Downstream for H2Down<'_> {
    fn conn(&self) -> ConnId {
        self.conn
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

    fn pause(&mut self, _: &mut Ctx) {
        self.codec.pause(self.key);
    }

    fn resume(&mut self, _: &mut Ctx) {
        self.codec.resume(self.key);
    }

    fn backlog(&self, _: &Ctx) -> usize {
        self.codec.queued(self.key)
    }

    /// HTTP/2 clients are not sent a `100` (h2 has no informational-response call for a stream
    /// whose head is pending); they send the body after their own short wait.
    fn send_continue(&mut self, _: &mut Ctx) {}

    fn send_head(&mut self, ctx: &mut Ctx, head: ResponseHead, body: BodyKind, cx: &ResponseContext<'_>) {
        ctx.shared.http(self.listener).response(head.status);
        if let Some(log) = &mut self.log {
            log.response(head.status, &head.headers, cx.service_time_ms);
        }
        self.codec.send_head(self.key, response(&head, cx), body == BodyKind::Empty);
    }

    /// Counted as wire bytes when h2 writes them.
    fn send_data(&mut self, _: &mut Ctx, data: Bytes) {
        if let Some(log) = &mut self.log {
            log.sent(data.len());
        }
        self.codec.send_data(self.key, data);
    }

    fn send_end(&mut self, _: &mut Ctx) {
        self.codec.send_end(self.key);
    }

    /// The origin's `101` becomes the `200` that accepts an extended CONNECT (RFC 8441); it
    /// counts as the `101` it was, as Envoy counts it. A proxied CONNECT's 2xx goes as it is.
    fn switch(&mut self, ctx: &mut Ctx, head: ResponseHead, cx: &ResponseContext<'_>) {
        ctx.shared.http(self.listener).response(head.status);
        if let Some(log) = &mut self.log {
            log.response(head.status, &head.headers, cx.service_time_ms);
        }
        let mut accepted = response(&head, cx);
        if head.status == 101 {
            *accepted.status_mut() = http::StatusCode::OK;
        }
        self.codec.send_head(self.key, accepted, false);
    }
}

/// Why an HTTP/2 request cannot be forwarded as HTTP/1.1.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadRequest {
    /// A `content-length` that is not a number.
    Length,
}

/// The request as an HTTP/1.1 head: `:authority` becomes `host`, `:path` the target (for
/// CONNECT the authority is), cookies are joined as HTTP/1.1 wants them in one field; and how
/// its body goes upstream (chunked when HTTP/2 framing gave no length).
pub(super) fn request_head(
    parts: &http::request::Parts,
    end: bool,
) -> Result<(RequestHead, BodyKind), BadRequest> {
    let authority = parts.uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let method = Method::from_token(parts.method.as_str());
    let target = if method == Method::Connect {
        Bytes::copy_from_slice(authority.as_bytes())
    } else {
        Bytes::copy_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes())
    };
    let mut headers = Headers::new();
    if !authority.is_empty() && !parts.headers.contains_key(http::header::HOST) {
        headers.append("host", authority.as_bytes());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
        } else {
            headers.append(name.as_str(), value.as_bytes());
        }
    }
    if !cookies.is_empty() {
        headers.append("cookie", &cookies.join(&b"; "[..]));
    }
    let body = match headers.get("content-length") {
        _ if end => BodyKind::Empty,
        Some(length) => {
            let length =
                std::str::from_utf8(length).ok().and_then(|l| l.parse().ok()).ok_or(BadRequest::Length)?;
            if length == 0 {
                BodyKind::Empty
            } else {
                BodyKind::Length(length)
            }
        }
        None => BodyKind::Chunked,
    };
    Ok((RequestHead { method, target, version: Version::Http11, headers }, body))
}

/// An extended CONNECT (RFC 8441) as the HTTP/1.1 upgrade it stands for: `GET` of its path
/// with `connection: upgrade` and `upgrade: <protocol>`. RFC 8441 clients send no
/// `sec-websocket-key`, and strict origins refuse a handshake without one, so a WebSocket
/// request gets one made of `random` (a client's own is passed on).
pub(super) fn upgrade_request(
    mut head: RequestHead,
    parts: &http::request::Parts,
    protocol: &str,
    random: u128,
) -> RequestHead {
    head.method = Method::Get;
    head.target = Bytes::copy_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.headers.remove("content-length");
    head.headers.append("connection", b"upgrade");
    head.headers.append("upgrade", protocol.as_bytes());
    if protocol.eq_ignore_ascii_case("websocket") && head.headers.get("sec-websocket-key").is_none() {
        head.headers.append("sec-websocket-key", &base64_16(random.to_be_bytes()));
    }
    head
}

/// An HTTP token (RFC 9110 §5.6.2), as an `upgrade` protocol must be.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Base64 of 16 bytes (a WebSocket key), with its padding.
fn base64_16(bytes: [u8; 16]) -> [u8; 24] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 24];
    for (i, chunk) in bytes.chunks(3).enumerate() {
        let n = chunk.iter().enumerate().fold(0u32, |n, (j, &b)| n | u32::from(b) << (16 - 8 * j));
        for k in 0..=chunk.len() {
            out[i * 4 + k] = ALPHABET[(n >> (18 - 6 * k) & 63) as usize];
        }
    }
    out
}

/// The client's response for an upstream's, rewritten as for HTTP/1.1 clients but with no
/// connection-level fields (HTTP/2 forbids them).
fn response(head: &ResponseHead, cx: &ResponseContext<'_>) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let fields = response.headers_mut();
    forwarded_response_fields(head, false, |name, value| {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            fields.append(name, value);
        }
    });
    fields.insert("x-envoy-upstream-service-time", HeaderValue::from(cx.service_time_ms as u64));
    if let Ok(server) = HeaderValue::from_str(cx.server_name) {
        fields.insert(http::header::SERVER, server);
    }
    response
}

/// A reply of the proxy's own as an HTTP/2 response head; its body goes as data.
pub(super) fn local_response(reply: &LocalReply<'_>, date: &[u8], server: &str) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let fields = response.headers_mut();
    if reply.sized {
        fields.insert(http::header::CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    if let Some(content_type) = reply.content_type {
        if let Ok(value) = HeaderValue::from_str(content_type) {
            fields.insert(http::header::CONTENT_TYPE, value);
        }
    }
    if let Ok(date) = HeaderValue::from_bytes(date) {
        fields.insert(http::header::DATE, date);
    }
    if let Ok(server) = HeaderValue::from_str(server) {
        fields.insert(http::header::SERVER, server);
    }
    for (name, value) in reply.extra {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            fields.append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_are_protocols() {
        assert!(is_token("websocket") && is_token("connect-udp") && is_token("x~1"));
        assert!(!is_token("") && !is_token("web socket") && !is_token("a\r\nb") && !is_token("a\0"));
    }

    #[test]
    fn websocket_keys_are_base64_of_sixteen_bytes() {
        assert_eq!(&base64_16([0; 16]), b"AAAAAAAAAAAAAAAAAAAAAA==");
        // RFC 6455's example key is the base64 of "the sample nonce".
        assert_eq!(&base64_16(*b"the sample nonce"), b"dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn an_extended_connect_becomes_a_get_upgrade_with_a_key() {
        let request = http::Request::builder()
            .method("CONNECT")
            .uri("http://ws.test/chat?room=1")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        let parts = request.into_parts().0;
        let (head, _) = request_head(&parts, false).unwrap();
        let head = upgrade_request(head, &parts, "websocket", 0);
        assert_eq!(head.method, Method::Get);
        assert_eq!(&head.target[..], b"/chat?room=1");
        assert_eq!(head.headers.get("host"), Some(&b"ws.test"[..]));
        assert_eq!(head.headers.get("upgrade"), Some(&b"websocket"[..]));
        assert!(head.headers.contains_token("connection", "upgrade"));
        assert_eq!(head.headers.get("sec-websocket-key"), Some(&b"AAAAAAAAAAAAAAAAAAAAAA=="[..]));
        assert_eq!(head.headers.get("sec-websocket-version"), Some(&b"13"[..]));
    }
}
