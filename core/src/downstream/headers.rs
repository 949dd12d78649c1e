//! How a proxied request and response are rewritten on their way through, as Envoy does.

use std::net::SocketAddr;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::http1::server::DownFraming;
use crate::codec::http1::{self, BodyKind, HeadWriter, Headers, Method, RequestHead, ResponseHead};
use crate::config::{HttpConnectionManager, RouteTarget};

/// Fields that describe one hop's connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&[u8]; 6] =
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"upgrade"];

/// Which fields of a head cross to the next hop: not the hop-by-hop ones, nor those the
/// `connection` field names. An upgrade keeps its `connection` and `upgrade` fields: they
/// are the request. `te: trailers` stays.
struct HopFilter {
    named: SmallVec<[Vec<u8>; 2]>,
    keep_upgrade: bool,
}

impl HopFilter {
    fn new(headers: &Headers, keep_upgrade: bool) -> HopFilter {
        let mut named = SmallVec::new();
        for value in headers.get_all("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii().to_ascii_lowercase();
                if !token.is_empty() && !HOP_BY_HOP.contains(&token.as_slice()) {
                    named.push(token);
                }
            }
        }
        HopFilter { named, keep_upgrade }
    }

    fn forwards(&self, name: &[u8], value: &[u8]) -> bool {
        if self.keep_upgrade && (name == b"connection" || name == b"upgrade") {
            return true;
        }
        if name == b"te" {
            return value.eq_ignore_ascii_case(b"trailers");
        }
        !HOP_BY_HOP.contains(&name) && !self.named.iter().any(|n| n.as_slice() == name)
    }
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

/// Where a rewritten request head goes: serialized for HTTP/1.1, or built as an HTTP/2 head.
trait RequestSink {
    fn request_line(&mut self, method: &Method, target: &[u8]);
    fn field(&mut self, name: &[u8], value: &[u8]);
    fn number_field(&mut self, name: &[u8], value: u64) {
        self.field(name, value.to_string().as_bytes());
    }
}

impl RequestSink for HeadWriter {
    fn request_line(&mut self, method: &Method, target: &[u8]) {
        HeadWriter::request_line(self, method, target);
    }

    fn field(&mut self, name: &[u8], value: &[u8]) {
        HeadWriter::field(self, name, value);
    }

    fn number_field(&mut self, name: &[u8], value: u64) {
        HeadWriter::number_field(self, name, value);
    }
}

/// An HTTP/2 request head being built: `host` becomes `:authority`, and the fields HTTP/2
/// forbids (RFC 9113 §8.2.2) are left out, as is HTTP/1.1 body framing.
struct H2Head {
    method: http::Method,
    target: Bytes,
    authority: Option<Bytes>,
    fields: http::HeaderMap,
}

impl RequestSink for H2Head {
    fn request_line(&mut self, method: &Method, target: &[u8]) {
        self.method = http::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(http::Method::GET);
        self.target = Bytes::copy_from_slice(target);
    }

    fn field(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"host" => self.authority = Some(Bytes::copy_from_slice(value)),
            b"transfer-encoding" | b"connection" | b"keep-alive" | b"proxy-connection" | b"upgrade"
            | b"te" => {}
            _ => {
                if let (Ok(name), Ok(value)) =
                    (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value))
                {
                    self.fields.append(name, value);
                }
            }
        }
    }
}

/// The request head as an HTTP/1.1 upstream gets it, serialized.
pub(crate) fn upstream_request(head: RequestHead, cx: &RequestContext<'_>) -> Bytes {
    let mut out = HeadWriter::new(head.target.len() + 64 * (head.headers.len() + 6));
    rewrite_request(head, cx, &mut out);
    out.finish(b"")
}

/// The request head as an HTTP/2 upstream gets it: a CONNECT names only its authority
/// (Envoy C3); other requests their scheme, authority and path; an upgrade is the extended
/// CONNECT it stands for (RFC 8441: `:protocol` its token; no WebSocket key over HTTP/2).
pub(crate) fn upstream_request_h2(mut head: RequestHead, cx: &RequestContext<'_>) -> http::Request<()> {
    let protocol = match cx.upgrade {
        true => {
            head.headers.get("upgrade").and_then(|t| std::str::from_utf8(t).ok()).map(h2::ext::Protocol::from)
        }
        false => None,
    };
    if protocol.is_some() {
        head.headers.remove("sec-websocket-key");
    }
    let mut out = H2Head {
        method: http::Method::GET,
        target: Bytes::new(),
        authority: None,
        fields: http::HeaderMap::new(),
    };
    rewrite_request(head, cx, &mut out);
    if protocol.is_some() {
        out.method = http::Method::CONNECT;
    }
    let authority = out.authority.unwrap_or_default();
    let uri = if out.method == http::Method::CONNECT && protocol.is_none() {
        http::Uri::try_from(authority.as_ref()).ok()
    } else {
        http::Uri::builder()
            .scheme("http")
            .authority(authority.as_ref())
            .path_and_query(out.target.as_ref())
            .build()
            .ok()
    };
    let mut request = http::Request::new(());
    *request.method_mut() = out.method;
    *request.uri_mut() = uri.unwrap_or_default();
    *request.headers_mut() = out.fields;
    if let Some(protocol) = protocol {
        request.extensions_mut().insert(protocol);
    }
    request
}

/// Envoy's rewrite of a request head on its way upstream, into `out`.
fn rewrite_request(head: RequestHead, cx: &RequestContext<'_>, out: &mut impl RequestSink) {
    let hop = HopFilter::new(&head.headers, cx.upgrade);
    let rewritten = match (cx.matched_prefix, &cx.route.prefix_rewrite) {
        (Some(prefix), Some(rewrite)) if head.target.starts_with(prefix.as_bytes()) => {
            Some([rewrite.as_bytes(), &head.target[prefix.len()..]].concat())
        }
        _ => None,
    };
    out.request_line(&head.method, rewritten.as_deref().unwrap_or(&head.target));
    let use_remote = cx.hcm.use_remote_address;
    let (mut forwarded_for, mut forwarded_proto, mut has_length) = (None, false, false);
    for (name, value) in head.headers.iter() {
        if !hop.forwards(name, value) {
            continue;
        }
        match name {
            // Envoy answers `Expect: 100-continue` itself; its own headers are set below.
            b"expect" => continue,
            b"x-envoy-expected-rq-timeout-ms" if cx.route.timeout.is_some() => continue,
            b"x-envoy-original-path" if rewritten.is_some() => continue,
            b"host" if cx.route.host_rewrite_literal.is_some() => {
                out.field(b"host", cx.route.host_rewrite_literal.as_deref().unwrap_or_default().as_bytes());
                continue;
            }
            b"x-forwarded-for" if use_remote => {
                forwarded_for = Some(value);
                continue;
            }
            b"x-forwarded-proto" if use_remote => continue,
            b"x-forwarded-proto" => forwarded_proto = true,
            b"content-length" => has_length = true,
            _ => {}
        }
        out.field(name, value);
    }
    // The body is re-framed for the upstream hop.
    match cx.body {
        BodyKind::Chunked if !cx.upgrade => out.field(b"transfer-encoding", b"chunked"),
        BodyKind::Length(n) if !has_length => out.number_field(b"content-length", n),
        _ => {}
    }
    if rewritten.is_some() {
        out.field(b"x-envoy-original-path", &head.target);
    }
    if use_remote {
        let peer = cx.peer.ip().to_string();
        match forwarded_for {
            Some(existing) => out.field(b"x-forwarded-for", &[existing, b", ", peer.as_bytes()].concat()),
            None => out.field(b"x-forwarded-for", peer.as_bytes()),
        }
    }
    if use_remote || !forwarded_proto {
        out.field(b"x-forwarded-proto", b"http");
    }
    if let Some(id) = cx.request_id {
        out.field(b"x-request-id", id.as_bytes());
    }
    if let Some(timeout) = cx.route.timeout {
        out.number_field(b"x-envoy-expected-rq-timeout-ms", timeout.as_millis() as u64);
    }
}

/// What the response rewrite needs to know besides the head.
#[derive(Clone, Copy)]
pub(crate) struct ResponseContext<'a> {
    /// The request asked for an upgrade: its `connection` and `upgrade` fields stay.
    pub(crate) upgrade_request: bool,
    pub(crate) server_name: &'a str,
    pub(crate) service_time_ms: u128,
    /// The connection ends after this response.
    pub(crate) close: bool,
}

/// The response head as the client gets it, serialized, and how its body is framed.
pub(crate) fn downstream_response(
    head: ResponseHead,
    body: BodyKind,
    cx: &ResponseContext<'_>,
) -> (Bytes, DownFraming) {
    let ResponseContext { upgrade_request, server_name, service_time_ms, close } = *cx;
    let mut out = HeadWriter::new(64 * (head.headers.len() + 5));
    out.status_line(head.status, http1::reason_phrase(head.status).as_bytes());
    forwarded_response_fields(&head, upgrade_request, |name, value| out.field(name, value));
    let framing = match body {
        BodyKind::Tunnel => DownFraming::Raw,
        BodyKind::Chunked | BodyKind::UntilClose => {
            out.field(b"transfer-encoding", b"chunked");
            DownFraming::Chunked
        }
        BodyKind::Empty | BodyKind::Length(_) => DownFraming::AsIs,
    };
    out.number_field(b"x-envoy-upstream-service-time", service_time_ms as u64);
    out.field(b"server", server_name.as_bytes());
    if close && !upgrade_request {
        out.field(b"connection", b"close");
    }
    (out.finish(b""), framing)
}

/// The upstream response's fields that go on to the client, in order: not the hop-by-hop
/// ones, nor those the proxy sets itself (`server`, `x-envoy-upstream-service-time`).
pub(crate) fn forwarded_response_fields(
    head: &ResponseHead,
    upgrade_request: bool,
    mut emit: impl FnMut(&[u8], &[u8]),
) {
    let hop = HopFilter::new(&head.headers, upgrade_request);
    for (name, value) in head.headers.iter() {
        if hop.forwards(name, value) && name != b"server" && name != b"x-envoy-upstream-service-time" {
            emit(name, value);
        }
    }
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

    fn context(upgrade_request: bool, service_time_ms: u128, close: bool) -> ResponseContext<'static> {
        ResponseContext { upgrade_request, server_name: "envoy", service_time_ms, close }
    }

    fn parse(head: &[u8]) -> ResponseHead {
        http1::parse_response_head(head).unwrap().unwrap().0
    }

    #[test]
    fn response_loses_hop_by_hop_fields_and_names_the_server() {
        let head = parse(b"HTTP/1.1 200 Whatever\r\nconnection: x-private\r\nx-private: 1\r\nkeep-alive: 5\r\ntransfer-encoding: chunked\r\nserver: origin\r\nx-app: yes\r\n\r\n");
        let (bytes, framing) = downstream_response(head, BodyKind::Chunked, &context(false, 7, false));
        assert_eq!(framing, DownFraming::Chunked);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "HTTP/1.1 200 OK\r\nx-app: yes\r\ntransfer-encoding: chunked\r\nx-envoy-upstream-service-time: 7\r\nserver: envoy\r\n\r\n"
        );
    }

    #[test]
    fn a_refused_upgrade_keeps_its_upgrade_fields() {
        let head = parse(b"HTTP/1.1 426 Upgrade Required\r\nconnection: upgrade\r\nupgrade: websocket\r\ncontent-length: 0\r\n\r\n");
        let (bytes, _) = downstream_response(head, BodyKind::Empty, &context(true, 1, true));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("connection: upgrade\r\nupgrade: websocket\r\n"), "{text}");
    }
}
