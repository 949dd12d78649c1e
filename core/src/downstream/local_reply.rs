//! Responses the proxy writes itself, in Envoy's shape.

use crate::codec::LocalReply;

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
/// Envoy's body when an HTTP/2 upstream refused the stream (and retries ran out).
pub(crate) const REFUSED_STREAM: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset";
/// Envoy's body when the route timeout passed before the response head.
pub(crate) const UPSTREAM_TIMEOUT: &str = "upstream request timeout";
/// Envoy's body when a circuit breaker refuses a request.
pub(crate) const OVERFLOW: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
/// Envoy's body when a cluster has no host to connect to.
pub(crate) const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";

/// Envoy's response flag for a reply of the proxy's own (`%RESPONSE_FLAGS%`), told by its
/// status and text.
pub(crate) fn flag(reply: &LocalReply<'_>) -> Option<&'static str> {
    let body = reply.body;
    let is = |text: &str| body == text.as_bytes();
    Some(match reply.status {
        404 => "NR",
        408 if is("stream timeout") => "SI",
        504 if is(UPSTREAM_TIMEOUT) => "UT",
        503 if is(CONNECT_FAILURE) || is(CONNECT_TIMEOUT) => "UF",
        503 if is(CONNECTION_TERMINATION) || is(PROTOCOL_ERROR) || is(REFUSED_STREAM) => "UC",
        503 if is(OVERFLOW) => "UO",
        503 if is(NO_HEALTHY_UPSTREAM) => "UH",
        _ => return None,
    })
}

/// A plain-text reply (no `content-type` when the body is empty), as Envoy sends its own.
pub(crate) fn text(status: u16, body: &str) -> LocalReply<'_> {
    LocalReply {
        status,
        content_type: (!body.is_empty()).then_some("text/plain"),
        body: body.as_bytes(),
        extra: &[],
        sized: true,
    }
}

/// Envoy's answer when a circuit breaker refuses a request.
pub(crate) fn overloaded() -> LocalReply<'static> {
    LocalReply { extra: &[("x-envoy-overloaded", "true")], ..text(503, OVERFLOW) }
}

/// The `200` that opens a terminated CONNECT tunnel: no body-length fields, since the body
/// is the tunnel.
pub(crate) fn connect_established() -> LocalReply<'static> {
    LocalReply { status: 200, content_type: None, body: b"", extra: &[], sized: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::http1::encode_reply;

    const DATE: &[u8] = b"Tue, 14 Nov 2023 22:13:20 GMT";

    #[test]
    fn forbidden_has_an_empty_body_and_closes() {
        assert_eq!(
            &encode_reply(&text(403, ""), DATE, true)[..],
            &b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
               server: envoy\r\nconnection: close\r\n\r\n"[..]
        );
    }

    #[test]
    fn connect_failure_carries_envoys_text() {
        let reply = encode_reply(&text(503, CONNECT_FAILURE), DATE, true);
        let text = std::str::from_utf8(&reply).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 98\r\n"));
        assert!(text.contains("content-type: text/plain\r\n"));
        assert!(text.ends_with("\r\n\r\nupstream connect error or disconnect/reset before headers. reset reason: remote connection failure"));
    }

    #[test]
    fn connect_established_has_no_length_headers() {
        assert_eq!(
            &encode_reply(&connect_established(), DATE, false)[..],
            &b"HTTP/1.1 200 OK\r\ndate: Tue, 14 Nov 2023 22:13:20 GMT\r\nserver: envoy\r\n\r\n"[..]
        );
    }
}
