//! Responses the proxy writes itself, in Envoy's shape.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::http1::reason_phrase;

/// Envoy's body when an upstream connection failed before a response.
pub(crate) const CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
/// Envoy's body when the upstream connection did not come up within `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection timeout";
/// Envoy's body when a bound upstream connection died before the response head.
pub(crate) const CONNECTION_TERMINATION: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
/// Envoy's body when the upstream broke HTTP before the response head.
pub(crate) const PROTOCOL_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";
/// Envoy's body when the route timeout passed before the response head.
pub(crate) const UPSTREAM_TIMEOUT: &str = "upstream request timeout";
/// Envoy's body when a circuit breaker refuses a request.
pub(crate) const OVERFLOW: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
/// Envoy's body when a cluster has no host to connect to.
pub(crate) const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";

/// A complete HTTP/1.1 local reply: Envoy sends `content-length`, `content-type: text/plain`
/// when there is a body, `date`, `server: envoy` (its default `server_name`) and, when the
/// connection ends with it, `connection: close`.
pub(crate) fn encode(status: u16, body: &str, date: &[u8], close: bool) -> Bytes {
    encode_with(status, (!body.is_empty()).then_some("text/plain"), body.as_bytes(), date, close, &[])
}

/// Envoy's answer when a circuit breaker refuses a request.
pub(crate) fn overloaded(date: &[u8], close: bool) -> Bytes {
    let body = OVERFLOW.as_bytes();
    encode_with(503, Some("text/plain"), body, date, close, &[("x-envoy-overloaded", "true")])
}

/// A complete response with an explicit content type (none: no `content-type` header).
pub(crate) fn encode_with(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    date: &[u8],
    close: bool,
    extra: &[(&str, &str)],
) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + body.len());
    status_line(&mut out, status);
    out.put_slice(b"content-length: ");
    out.put_slice(body.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    if let Some(content_type) = content_type {
        out.put_slice(b"content-type: ");
        out.put_slice(content_type.as_bytes());
        out.put_slice(b"\r\n");
    }
    common_headers(&mut out, date);
    for (name, value) in extra {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// The `200` that opens a terminated CONNECT tunnel: no body-length headers, since the body
/// is the tunnel.
pub(crate) fn connect_established(date: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(96);
    status_line(&mut out, 200);
    common_headers(&mut out, date);
    out.put_slice(b"\r\n");
    out.freeze()
}

fn status_line(out: &mut BytesMut, status: u16) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason_phrase(status).as_bytes());
    out.put_slice(b"\r\n");
}

fn common_headers(out: &mut BytesMut, date: &[u8]) {
    out.put_slice(b"date: ");
    out.put_slice(date);
    out.put_slice(b"\r\nserver: envoy\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Tue, 14 Nov 2023 22:13:20 GMT";

    #[test]
    fn forbidden_has_an_empty_body_and_closes() {
        assert_eq!(
            &encode(403, "", DATE, true)[..],
            &b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
               server: envoy\r\nconnection: close\r\n\r\n"[..]
        );
    }

    #[test]
    fn connect_failure_carries_envoys_text() {
        let reply = encode(503, CONNECT_FAILURE, DATE, true);
        let text = std::str::from_utf8(&reply).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 98\r\n"));
        assert!(text.contains("content-type: text/plain\r\n"));
        assert!(text.ends_with("\r\n\r\nupstream connect error or disconnect/reset before headers. reset reason: remote connection failure"));
    }

    #[test]
    fn connect_established_has_no_length_headers() {
        assert_eq!(
            &connect_established(DATE)[..],
            &b"HTTP/1.1 200 OK\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\nserver: envoy\r\n\r\n"[..]
        );
    }
}
