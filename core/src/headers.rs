//! How a proxied request and response are rewritten on their way through, as Envoy does.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::config::{HttpConnectionManager, RouteTarget};
use crate::http1::{self, BodyKind, Headers, RequestHead, ResponseHead};

/// Fields that describe one hop's connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&[u8]; 6] =
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"upgrade"];

/// Removes hop-by-hop fields, and those the `connection` field names, in one pass. An upgrade
/// keeps its `connection` and `upgrade` fields: they are the request. `te: trailers` stays.
fn strip_hop_by_hop(headers: &mut Headers, keep_upgrade: bool) {
    let mut named: SmallVec<[Vec<u8>; 2]> = SmallVec::new();
    for value in headers.get_all("connection") {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii().to_ascii_lowercase();
            if !token.is_empty() && !HOP_BY_HOP.contains(&token.as_slice()) {
                named.push(token);
            }
        }
    }
    headers.retain(|name, value| {
        if keep_upgrade && (name == b"connection" || name == b"upgrade") {
            return true;
        }
        if name == b"te" {
            return value.eq_ignore_ascii_case(b"trailers");
        }
        !HOP_BY_HOP.contains(&name) && !named.iter().any(|n| n.as_slice() == name)
    });
}

/// What the request rewrite needs to know besides the head.
pub(crate) struct RequestContext<'a> {
    pub(crate) hcm: &'a HttpConnectionManager,
    pub(crate) route: &'a RouteTarget,
    pub(crate) matched_prefix: Option<&'a str>,
    pub(crate) peer: SocketAddr,
    /// The body as it will be sent upstream.
    pub(crate) body: BodyKind,
    pub(crate) upgrade: bool,
    /// A fresh `x-request-id`, when one is to be added.
    pub(crate) request_id: Option<&'a str>,
}

/// The request head as the upstream gets it, serialized.
pub(crate) fn upstream_request(mut head: RequestHead, cx: &RequestContext<'_>) -> Bytes {
    let headers = &mut head.headers;
    strip_hop_by_hop(headers, cx.upgrade);
    // The body is re-framed for the upstream hop.
    match cx.body {
        BodyKind::Chunked if !cx.upgrade => headers.append("transfer-encoding", b"chunked"),
        BodyKind::Length(n) if headers.get("content-length").is_none() => {
            headers.append("content-length", n.to_string().as_bytes())
        }
        _ => {}
    }
    headers.remove("expect");
    if let Some(host) = &cx.route.host_rewrite_literal {
        headers.insert("host", host.as_bytes());
    }
    let mut target = head.target.clone();
    if let (Some(prefix), Some(rewrite)) = (cx.matched_prefix, &cx.route.prefix_rewrite) {
        if target.starts_with(prefix.as_bytes()) {
            headers.insert("x-envoy-original-path", &target);
            let mut path = BytesMut::with_capacity(target.len() + rewrite.len());
            path.extend_from_slice(rewrite.as_bytes());
            path.extend_from_slice(&target[prefix.len()..]);
            target = path.freeze();
        }
    }
    if cx.hcm.use_remote_address {
        let forwarded = match headers.get("x-forwarded-for") {
            Some(existing) => format!("{}, {}", String::from_utf8_lossy(existing), cx.peer.ip()),
            None => cx.peer.ip().to_string(),
        };
        headers.insert("x-forwarded-for", forwarded.as_bytes());
        headers.insert("x-forwarded-proto", b"http");
    } else if headers.get("x-forwarded-proto").is_none() {
        headers.append("x-forwarded-proto", b"http");
    }
    if let Some(id) = cx.request_id {
        headers.append("x-request-id", id.as_bytes());
    }
    if let Some(timeout) = cx.route.timeout {
        headers.insert("x-envoy-expected-rq-timeout-ms", timeout.as_millis().to_string().as_bytes());
    }
    let mut out = BytesMut::with_capacity(256);
    http1::write_request_head(&head.method, &target, &head.headers, &mut out);
    out.freeze()
}

/// How the response body travels to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownFraming {
    /// As received: no body, or a content-length body.
    AsIs,
    /// Re-framed as chunked (the upstream sent chunked, or delimited by close).
    Chunked,
    /// A protocol switch: raw bytes follow.
    Raw,
}

/// The response head as the client gets it, serialized, and how its body is framed.
pub(crate) fn downstream_response(
    mut head: ResponseHead,
    body: BodyKind,
    upgrade_request: bool,
    server_name: &str,
    service_time_ms: u128,
    close: bool,
) -> (Bytes, DownFraming) {
    let headers = &mut head.headers;
    strip_hop_by_hop(headers, upgrade_request);
    let framing = match body {
        BodyKind::Tunnel => DownFraming::Raw,
        BodyKind::Chunked | BodyKind::UntilClose => {
            headers.append("transfer-encoding", b"chunked");
            DownFraming::Chunked
        }
        BodyKind::Empty | BodyKind::Length(_) => DownFraming::AsIs,
    };
    headers.insert("x-envoy-upstream-service-time", service_time_ms.to_string().as_bytes());
    headers.insert("server", server_name.as_bytes());
    if close && !upgrade_request {
        headers.append("connection", b"close");
    }
    let mut out = BytesMut::with_capacity(256);
    http1::write_response_head(
        head.status,
        http1::reason_phrase(head.status).as_bytes(),
        &head.headers,
        &mut out,
    );
    (out.freeze(), framing)
}

/// A version-4 UUID from 128 random bits, as Envoy's `x-request-id`.
pub(crate) fn uuid4(random: u128) -> String {
    let bits = (random & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut nibble = 32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            nibble -= 1;
            *slot = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
        }
    }
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid4_sets_version_and_variant() {
        let id = uuid4(0);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        let id = uuid4(u128::MAX);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    fn parse(head: &[u8]) -> ResponseHead {
        http1::parse_response_head(head).unwrap().unwrap().0
    }

    #[test]
    fn response_loses_hop_by_hop_fields_and_names_the_server() {
        let head = parse(b"HTTP/1.1 200 Whatever\r\nconnection: x-private\r\nx-private: 1\r\nkeep-alive: 5\r\ntransfer-encoding: chunked\r\nserver: origin\r\nx-app: yes\r\n\r\n");
        let (bytes, framing) = downstream_response(head, BodyKind::Chunked, false, "envoy", 7, false);
        assert_eq!(framing, DownFraming::Chunked);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "HTTP/1.1 200 OK\r\nx-app: yes\r\ntransfer-encoding: chunked\r\nx-envoy-upstream-service-time: 7\r\nserver: envoy\r\n\r\n"
        );
    }

    #[test]
    fn a_refused_upgrade_keeps_its_upgrade_fields() {
        let head = parse(b"HTTP/1.1 426 Upgrade Required\r\nconnection: upgrade\r\nupgrade: websocket\r\ncontent-length: 0\r\n\r\n");
        let (bytes, _) = downstream_response(head, BodyKind::Empty, true, "envoy", 1, true);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("connection: upgrade\r\nupgrade: websocket\r\n"), "{text}");
    }
}
