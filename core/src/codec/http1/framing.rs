//! Where a body ends (RFC 9112 §6), decided once per head.
//!
//! Requests are judged strictly: any ambiguity between `content-length` and
//! `transfer-encoding` is a smuggling vector through a proxy, so it is refused rather than
//! resolved. Responses follow the RFC's precedence, since upstreams are trusted more and a
//! response can always fall back to read-until-close.

use super::error::HeadError;
use super::head::{trim_ows, Headers, Method, RequestHead, ResponseHead, Version};

/// How the bytes after a head are delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: the next message starts right after the head.
    Empty,
    /// Exactly this many bytes (never zero: zero is `Empty`).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// The connection turns into an opaque byte stream in both directions (CONNECT, or a 101
    /// protocol switch); it ends when either side closes.
    Tunnel,
    /// A response body that ends when upstream closes the connection.
    UntilClose,
}

/// The body framing of a request, or why the request must be refused.
///
/// CONNECT: no `transfer-encoding`, no non-zero `content-length`, target `host:port`; then the
/// bytes after the head are already tunnel data. Otherwise: `content-length` and
/// `transfer-encoding` together are refused, as is `transfer-encoding` on HTTP/1.0; the last
/// transfer coding must be `chunked` (else 501).
pub fn request_body(head: &RequestHead) -> Result<BodyKind, HeadError> {
    let has_te = head.headers.get("transfer-encoding").is_some();
    let length = content_length(&head.headers)?;
    if head.method.is_connect() {
        if has_te {
            return Err(HeadError::InvalidTransferEncoding);
        }
        if length.is_some_and(|n| n != 0) {
            return Err(HeadError::ConnectWithBody);
        }
        if !is_authority(&head.target) {
            return Err(HeadError::InvalidAuthority);
        }
        return Ok(BodyKind::Tunnel);
    }
    if has_te {
        if head.version == Version::Http10 {
            return Err(HeadError::InvalidTransferEncoding);
        }
        if length.is_some() {
            return Err(HeadError::ContentLengthAndTransferEncoding);
        }
        return match last_coding_is_chunked(&head.headers) {
            Codings::Chunked => Ok(BodyKind::Chunked),
            Codings::ChunkedTwice => Err(HeadError::InvalidTransferEncoding),
            Codings::NotChunked => Err(HeadError::UnsupportedTransferEncoding),
        };
    }
    Ok(sized(length))
}

/// The body framing of a response to a request with `request_method`.
///
/// No body for HEAD, 1xx, 204 and 304; a 101 or a 2xx to CONNECT switches to a tunnel;
/// `transfer-encoding` wins over `content-length` (chunked last, or else read until close); an
/// unusable `content-length` is an error (RFC 9112 §6.3: the proxy answers 502 and closes).
pub fn response_body(request_method: &Method, head: &ResponseHead) -> Result<BodyKind, HeadError> {
    let status = head.status;
    if status == 101 || (request_method.is_connect() && (200..300).contains(&status)) {
        return Ok(BodyKind::Tunnel);
    }
    if (100..200).contains(&status) || status == 204 || status == 304 || *request_method == Method::Head {
        return Ok(BodyKind::Empty);
    }
    if head.headers.get("transfer-encoding").is_some() {
        let chunked =
            head.version == Version::Http11 && last_coding_is_chunked(&head.headers) == Codings::Chunked;
        return Ok(if chunked { BodyKind::Chunked } else { BodyKind::UntilClose });
    }
    match content_length(&head.headers)? {
        None => Ok(BodyKind::UntilClose),
        length => Ok(sized(length)),
    }
}

fn sized(length: Option<u64>) -> BodyKind {
    match length {
        None | Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
    }
}

/// The one value every `content-length` field (and every element of a comma list in one)
/// agrees on; `None` without the field.
fn content_length(headers: &Headers) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for value in headers.get_all("content-length") {
        for item in value.split(|&b| b == b',') {
            let n = parse_decimal(trim_ows(item)).ok_or(HeadError::InvalidContentLength)?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::InvalidContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Codings {
    Chunked,
    ChunkedTwice,
    NotChunked,
}

/// Reads the transfer codings across every `transfer-encoding` field, in order. Empty list
/// elements are ignored (RFC 9110 §5.6.1).
fn last_coding_is_chunked(headers: &Headers) -> Codings {
    let mut chunked_seen = false;
    let mut last_is_chunked = false;
    for value in headers.get_all("transfer-encoding") {
        for coding in value.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
            if chunked_seen {
                // Nothing may follow `chunked`, and it may not repeat (RFC 9112 §6.1).
                return if coding.eq_ignore_ascii_case(b"chunked") {
                    Codings::ChunkedTwice
                } else {
                    Codings::NotChunked
                };
            }
            last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked_seen = last_is_chunked;
        }
    }
    if last_is_chunked {
        Codings::Chunked
    } else {
        Codings::NotChunked
    }
}

/// `host:port` as a CONNECT target must be (RFC 9110 §9.3.6): a non-empty reg-name or IPv4
/// address, or an IPv6 address in brackets, and a port in 1..=65535. Anything with a scheme,
/// path or userinfo is refused.
fn is_authority(target: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = target.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let host = &rest[..close];
        let ok = !host.is_empty() && host.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok, rest[close + 1..].strip_prefix(b":"))
    } else {
        let Some(colon) = target.iter().rposition(|&b| b == b':') else {
            return false;
        };
        let host = &target[..colon];
        let ok = !host.is_empty() && host.iter().all(|&b| is_reg_name_byte(b));
        (ok, Some(&target[colon + 1..]))
    };
    let port_ok =
        port.filter(|p| p.len() <= 5).and_then(parse_decimal).is_some_and(|p| (1..=65535).contains(&p));
    host_ok && port_ok
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request(method: Method, target: &'static str, fields: &[(&str, &str)]) -> RequestHead {
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.append(name, value.as_bytes());
        }
        RequestHead {
            method,
            target: Bytes::from_static(target.as_bytes()),
            version: Version::Http11,
            headers,
        }
    }

    fn post(fields: &[(&str, &str)]) -> Result<BodyKind, HeadError> {
        request_body(&request(Method::Post, "/", fields))
    }

    fn connect(target: &'static str, fields: &[(&str, &str)]) -> Result<BodyKind, HeadError> {
        request_body(&request(Method::Connect, target, fields))
    }

    #[test]
    fn no_framing_headers_means_no_body() {
        assert_eq!(post(&[]), Ok(BodyKind::Empty));
    }

    #[test]
    fn content_length() {
        assert_eq!(post(&[("content-length", "42")]), Ok(BodyKind::Length(42)));
    }

    #[test]
    fn zero_content_length_is_empty() {
        assert_eq!(post(&[("content-length", "0")]), Ok(BodyKind::Empty));
    }

    #[test]
    fn max_u64_content_length() {
        assert_eq!(post(&[("content-length", "18446744073709551615")]), Ok(BodyKind::Length(u64::MAX)));
    }

    #[test]
    fn overflowing_content_length_is_refused() {
        assert_eq!(post(&[("content-length", "18446744073709551616")]), Err(HeadError::InvalidContentLength));
    }

    #[test]
    fn non_numeric_content_length_is_refused() {
        assert_eq!(post(&[("content-length", "12a")]), Err(HeadError::InvalidContentLength));
    }

    #[test]
    fn signed_content_length_is_refused() {
        assert_eq!(post(&[("content-length", "+5")]), Err(HeadError::InvalidContentLength));
    }

    #[test]
    fn empty_content_length_is_refused() {
        assert_eq!(post(&[("content-length", "")]), Err(HeadError::InvalidContentLength));
    }

    #[test]
    fn repeated_equal_content_lengths_are_one() {
        assert_eq!(post(&[("content-length", "5"), ("content-length", "5")]), Ok(BodyKind::Length(5)));
    }

    #[test]
    fn equal_content_length_list_is_one() {
        assert_eq!(post(&[("content-length", "5, 5")]), Ok(BodyKind::Length(5)));
    }

    #[test]
    fn differing_content_lengths_are_refused() {
        assert_eq!(
            post(&[("content-length", "5"), ("content-length", "6")]),
            Err(HeadError::InvalidContentLength)
        );
    }

    #[test]
    fn differing_content_length_list_is_refused() {
        assert_eq!(post(&[("content-length", "5,6")]), Err(HeadError::InvalidContentLength));
    }

    #[test]
    fn chunked() {
        assert_eq!(post(&[("transfer-encoding", "chunked")]), Ok(BodyKind::Chunked));
    }

    #[test]
    fn chunked_is_case_insensitive() {
        assert_eq!(post(&[("transfer-encoding", "Chunked")]), Ok(BodyKind::Chunked));
    }

    #[test]
    fn chunked_last_after_another_coding() {
        assert_eq!(post(&[("transfer-encoding", "gzip, chunked")]), Ok(BodyKind::Chunked));
    }

    #[test]
    fn chunked_last_across_fields() {
        assert_eq!(
            post(&[("transfer-encoding", "gzip"), ("transfer-encoding", "chunked")]),
            Ok(BodyKind::Chunked)
        );
    }

    #[test]
    fn empty_list_elements_are_ignored() {
        assert_eq!(post(&[("transfer-encoding", ", chunked ,")]), Ok(BodyKind::Chunked));
    }

    #[test]
    fn last_coding_not_chunked_is_not_implemented() {
        assert_eq!(
            post(&[("transfer-encoding", "chunked, gzip")]),
            Err(HeadError::UnsupportedTransferEncoding)
        );
    }

    #[test]
    fn unknown_coding_is_not_implemented() {
        assert_eq!(post(&[("transfer-encoding", "gzip")]), Err(HeadError::UnsupportedTransferEncoding));
    }

    #[test]
    fn empty_transfer_encoding_is_not_implemented() {
        assert_eq!(post(&[("transfer-encoding", "")]), Err(HeadError::UnsupportedTransferEncoding));
    }

    #[test]
    fn chunked_twice_is_refused() {
        assert_eq!(
            post(&[("transfer-encoding", "chunked, chunked")]),
            Err(HeadError::InvalidTransferEncoding)
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        assert_eq!(
            post(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err(HeadError::ContentLengthAndTransferEncoding)
        );
    }

    #[test]
    fn http10_with_transfer_encoding_is_refused() {
        let mut head = request(Method::Post, "/", &[("transfer-encoding", "chunked")]);
        head.version = Version::Http10;
        assert_eq!(request_body(&head), Err(HeadError::InvalidTransferEncoding));
    }

    #[test]
    fn connect_is_a_tunnel() {
        assert_eq!(connect("example.com:443", &[]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_with_zero_content_length_is_a_tunnel() {
        assert_eq!(connect("example.com:443", &[("content-length", "0")]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_with_content_length_is_refused() {
        assert_eq!(connect("example.com:443", &[("content-length", "5")]), Err(HeadError::ConnectWithBody));
    }

    #[test]
    fn connect_with_transfer_encoding_is_refused() {
        assert_eq!(
            connect("example.com:443", &[("transfer-encoding", "chunked")]),
            Err(HeadError::InvalidTransferEncoding)
        );
    }

    #[test]
    fn connect_to_ipv4() {
        assert_eq!(connect("10.0.0.1:80", &[]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_to_bracketed_ipv6() {
        assert_eq!(connect("[2001:db8::1]:8443", &[]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_refuses_bad_targets() {
        for target in [
            "example.com",
            "example.com:",
            ":443",
            "example.com:http",
            "example.com:0",
            "example.com:65536",
            "example.com:000443",
            "http://example.com:443",
            "/path",
            "user@example.com:443",
            "2001:db8::1:443",
            "[2001:db8::1]",
            "[2001:db8::1]443",
            "[]:443",
            "[2001:db8::1:443",
            "*",
        ] {
            assert_eq!(connect(target, &[]), Err(HeadError::InvalidAuthority), "{target}");
        }
    }

    fn respond(method: Method, status: u16, fields: &[(&str, &str)]) -> Result<BodyKind, HeadError> {
        let mut head =
            ResponseHead { version: Version::Http11, status, reason: Bytes::new(), headers: Headers::new() };
        for (name, value) in fields {
            head.headers.append(name, value.as_bytes());
        }
        response_body(&method, &head)
    }

    #[test]
    fn response_to_head_has_no_body() {
        assert_eq!(respond(Method::Head, 200, &[("content-length", "10")]), Ok(BodyKind::Empty));
    }

    #[test]
    fn informational_has_no_body() {
        assert_eq!(respond(Method::Get, 100, &[]), Ok(BodyKind::Empty));
    }

    #[test]
    fn no_content_has_no_body() {
        assert_eq!(respond(Method::Get, 204, &[("content-length", "10")]), Ok(BodyKind::Empty));
    }

    #[test]
    fn not_modified_has_no_body() {
        assert_eq!(respond(Method::Get, 304, &[("content-length", "10")]), Ok(BodyKind::Empty));
    }

    #[test]
    fn switching_protocols_is_a_tunnel() {
        assert_eq!(respond(Method::Get, 101, &[]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_2xx_is_a_tunnel() {
        assert_eq!(respond(Method::Connect, 200, &[("content-length", "10")]), Ok(BodyKind::Tunnel));
    }

    #[test]
    fn connect_failure_has_a_body() {
        assert_eq!(respond(Method::Connect, 403, &[("content-length", "10")]), Ok(BodyKind::Length(10)));
    }

    #[test]
    fn response_content_length() {
        assert_eq!(respond(Method::Get, 200, &[("content-length", "10")]), Ok(BodyKind::Length(10)));
    }

    #[test]
    fn response_chunked_wins_over_content_length() {
        let fields = [("content-length", "10"), ("transfer-encoding", "chunked")];
        assert_eq!(respond(Method::Get, 200, &fields), Ok(BodyKind::Chunked));
    }

    #[test]
    fn response_other_coding_reads_until_close() {
        assert_eq!(respond(Method::Get, 200, &[("transfer-encoding", "gzip")]), Ok(BodyKind::UntilClose));
    }

    #[test]
    fn response_without_framing_reads_until_close() {
        assert_eq!(respond(Method::Get, 200, &[]), Ok(BodyKind::UntilClose));
    }

    #[test]
    fn response_bad_content_length_is_an_error() {
        assert_eq!(
            respond(Method::Get, 200, &[("content-length", "x")]),
            Err(HeadError::InvalidContentLength)
        );
    }
}
