//! Head parsing: `httparse` does the syntax, this module adds limits and builds owned heads.
//!
//! Both parsers are restartable: call again with a longer buffer after `Ok(None)`. Only the first
//! `max_head_bytes` of the buffer are ever parsed, so the outcome never depends on how the bytes
//! were split into reads, and a flood of header bytes costs at most one limit's worth of work per
//! call.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::error::HeadError;
use super::head::{Headers, Method, RequestHead, ResponseHead, Version};
use super::write::reason_phrase;

/// What a downstream client may send in a request head (Envoy's HTTP connection manager
/// settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the start of the request line (leading empty lines included) to the end of the
    /// blank line that ends the head.
    pub max_head_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Whether HTTP/1.0 requests are served (otherwise 426).
    pub accept_http_10: bool,
}

impl Limits {
    /// From the config fields `max_request_headers_kb`, `max_headers_count` and
    /// `http_protocol_options.accept_http_10`.
    pub fn new(max_request_headers_kb: u32, max_headers_count: u32, accept_http_10: bool) -> Limits {
        Limits {
            max_head_bytes: max_request_headers_kb as usize * 1024,
            max_headers: max_headers_count as usize,
            accept_http_10,
        }
    }
}

impl Default for Limits {
    /// Envoy's defaults: 60 KiB, 100 headers, no HTTP/1.0.
    fn default() -> Limits {
        Limits::new(60, 100, false)
    }
}

/// Limits on a response head from upstream (Envoy's fixed 80 KiB and its default 100 headers).
const RESPONSE_LIMITS: Limits = Limits { max_head_bytes: 80 * 1024, max_headers: 100, accept_http_10: true };

/// Header slots live on the stack up to this many; beyond, on the heap.
const INLINE_SLOTS: usize = 128;

/// Parses a request head at the start of `buf`. `Ok(None)`: not complete yet, read more.
/// `Ok(Some((head, n)))`: the head took `n` bytes; the body (or the next request) starts at
/// `buf[n]`. Leading empty lines are skipped (RFC 9112 §2.2) and counted in `n`.
///
/// A version of the form `HTTP/D.D` other than 1.0 and 1.1 (say `HTTP/9.7`) is taken for
/// HTTP/1.0, as Envoy's codecs take any version that is not HTTP/1.1: refused with 426 unless
/// `accept_http_10`.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    parse_request_window(window, buf.len(), limits, true)
}

/// [`parse_request_head`] on the first `max_head_bytes` of a buffer of `buf_len` bytes;
/// `other_versions`: try an unknown `HTTP/D.D` version as HTTP/1.0.
fn parse_request_window(
    window: &[u8],
    buf_len: usize,
    limits: &Limits,
    other_versions: bool,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut inline = [const { MaybeUninit::uninit() }; INLINE_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(&mut inline, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(window, slots);
    if other_versions && matches!(parsed, Err(httparse::Error::Version)) {
        return other_version(window, buf_len, limits);
    }
    let Some(len) = complete(parsed, buf_len, limits)? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let version = if version == 0 { Version::Http10 } else { Version::Http11 };
    if version == Version::Http10 && !limits.accept_http_10 {
        return Err(HeadError::Http10NotAllowed);
    }
    let head = RequestHead {
        method: Method::from_token(method),
        target: Bytes::copy_from_slice(target.as_bytes()),
        version,
        headers: collect_headers(window, req.headers),
    };
    Ok(Some((head, len)))
}

/// A request line httparse refused for its version (method and target were fine). An
/// `HTTP/D.D` version (RFC 9112 §2.3's syntax, as Envoy's balsa parser checks it) is parsed
/// as HTTP/1.0; a prefix of one waits for more bytes; anything else is malformed.
fn other_version(
    window: &[u8],
    buf_len: usize,
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    const SHAPE: &[u8; 8] = b"HTTP/D.D";
    let start = window.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(window.len());
    let mut spaces = window[start..].iter().enumerate().filter(|&(_, &b)| b == b' ');
    let Some((second_space, _)) = spaces.nth(1) else {
        return Err(HeadError::Malformed);
    };
    let at = start + second_space + 1;
    let version = &window[at..window.len().min(at + SHAPE.len())];
    let fits = version.iter().zip(SHAPE).all(|(&b, &want)| match want {
        b'D' => b.is_ascii_digit(),
        want => b == want,
    });
    if !fits {
        return Err(HeadError::Malformed);
    }
    if version.len() < SHAPE.len() {
        return if buf_len > limits.max_head_bytes { Err(HeadError::HeadersTooLarge) } else { Ok(None) };
    }
    let mut patched = window.to_vec();
    patched[at..at + SHAPE.len()].copy_from_slice(b"HTTP/1.0");
    parse_request_window(&patched, buf_len, limits, false)
}

/// Parses a response head from upstream; same contract as [`parse_request_head`], with Envoy's
/// fixed upstream limits (80 KiB, 100 headers). Status codes below 100 are malformed.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let limits = RESPONSE_LIMITS;
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut inline = [const { MaybeUninit::uninit() }; INLINE_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(&mut inline, &mut heap, limits.max_headers);
    let mut res = httparse::Response::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, window, slots);
    let Some(len) = complete(parsed, buf.len(), &limits)? else {
        return Ok(None);
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err(HeadError::Malformed);
    };
    if status < 100 {
        return Err(HeadError::Malformed);
    }
    let reason = status_line_reason(window);
    let reason = if reason == reason_phrase(status).as_bytes() {
        Bytes::from_static(reason_phrase(status).as_bytes())
    } else {
        Bytes::copy_from_slice(reason)
    };
    let head = ResponseHead {
        version: if version == 0 { Version::Http10 } else { Version::Http11 },
        status,
        reason,
        headers: collect_headers(window, res.headers),
    };
    Ok(Some((head, len)))
}

fn header_slots<'a, 'b>(
    inline: &'a mut [MaybeUninit<httparse::Header<'b>>; INLINE_SLOTS],
    heap: &'a mut Vec<MaybeUninit<httparse::Header<'b>>>,
    count: usize,
) -> &'a mut [MaybeUninit<httparse::Header<'b>>] {
    if count <= INLINE_SLOTS {
        &mut inline[..count]
    } else {
        heap.resize_with(count, MaybeUninit::uninit);
        heap
    }
}

/// The head's length, `None` while incomplete within the limit, or the refusal.
fn complete(
    parsed: httparse::Result<usize>,
    buf_len: usize,
    limits: &Limits,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buf_len > limits.max_head_bytes => Err(HeadError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(map_error(e)),
    }
}

fn map_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::HeaderName | httparse::Error::HeaderValue => HeadError::InvalidCharacters,
        httparse::Error::NewLine
        | httparse::Error::Status
        | httparse::Error::Token
        | httparse::Error::Version => HeadError::Malformed,
    }
}

/// The reason phrase, read from the raw status line: httparse replaces a phrase holding
/// obs-text by an empty string, and a proxy should pass it through unchanged.
fn status_line_reason(head: &[u8]) -> &[u8] {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(head.len());
    let line = &head[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // httparse accepted exactly `HTTP/1.x SSS` then an optional ` reason`.
    line.get(13..).unwrap_or_default()
}

/// Copies the header block out of the read buffer once, lower-casing names in place, and keeps
/// the fields as offsets into that copy.
fn collect_headers(buf: &[u8], fields: &[httparse::Header<'_>]) -> Headers {
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base);
    let name_span = |f: &httparse::Header<'_>| {
        let start = offset(f.name.as_bytes());
        (start, start + f.name.len())
    };
    // An empty value may point anywhere in its line; it gets an empty range.
    let value_span = |f: &httparse::Header<'_>| match f.value.len() {
        0 => None,
        len => Some((offset(f.value), offset(f.value) + len)),
    };
    let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
        return Headers::new();
    };
    let lo = name_span(first).0;
    let hi = value_span(last).map_or(name_span(last).1, |(_, end)| end);
    let mut block = BytesMut::with_capacity(hi - lo);
    block.extend_from_slice(&buf[lo..hi]);
    for f in fields {
        let (start, end) = name_span(f);
        block[start - lo..end - lo].make_ascii_lowercase();
    }
    Headers::from_parsed(
        block,
        fields.iter().map(|f| {
            let (start, end) = name_span(f);
            let value = value_span(f).map_or((0, 0), |(s, e)| (s - lo, e - lo));
            ((start - lo, end - lo), value)
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { accept_http_10: true, ..Limits::default() }
    }

    fn parse(input: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(input, &limits())
    }

    fn head(input: &[u8]) -> RequestHead {
        parse(input).unwrap().unwrap().0
    }

    fn err(input: &[u8]) -> HeadError {
        parse(input).unwrap_err()
    }

    #[test]
    fn parses_a_simple_get() {
        let h = head(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (h.method, &h.target[..], h.version, h.headers.get("host")),
            (Method::Get, &b"/a?b"[..], Version::Http11, Some(&b"x"[..]))
        );
    }

    #[test]
    fn consumed_stops_at_the_blank_line() {
        let (_, n) = parse(b"GET / HTTP/1.1\r\n\r\nbody").unwrap().unwrap();
        assert_eq!(n, 18);
    }

    #[test]
    fn incomplete_is_none() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn names_are_lowercased_and_order_kept() {
        let h = head(b"GET / HTTP/1.1\r\nX-B: 1\r\nHOST: x\r\nx-b: 2\r\n\r\n");
        let fields: Vec<(&[u8], &[u8])> = h.headers.iter().collect();
        assert_eq!(fields, [(&b"x-b"[..], &b"1"[..]), (b"host", b"x"), (b"x-b", b"2")]);
    }

    #[test]
    fn values_are_trimmed() {
        assert_eq!(head(b"GET / HTTP/1.1\r\nA:  v w \t\r\n\r\n").headers.get("a"), Some(&b"v w"[..]));
    }

    #[test]
    fn empty_values_are_kept() {
        assert_eq!(head(b"GET / HTTP/1.1\r\nA:\r\nB: \r\n\r\n").headers.get("b"), Some(&b""[..]));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let (h, n) = parse(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.method, n), (Method::Get, 22));
    }

    #[test]
    fn other_methods_are_kept() {
        assert_eq!(head(b"PURGE / HTTP/1.1\r\n\r\n").method, Method::Other("PURGE".into()));
    }

    #[test]
    fn http10_is_parsed_when_accepted() {
        assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    }

    #[test]
    fn http10_is_refused_by_default() {
        let r = parse_request_head(b"GET / HTTP/1.0\r\n\r\n", &Limits::default());
        assert_eq!(r.unwrap_err(), HeadError::Http10NotAllowed);
    }

    #[test]
    fn other_http_d_d_versions_are_http10_as_in_envoy() {
        for version in ["HTTP/9.7", "HTTP/2.0", "HTTP/1.2", "HTTP/0.9"] {
            let request = format!("GET /v {version}\r\nHost: x\r\n\r\n");
            let (h, n) = parse(request.as_bytes()).unwrap().unwrap();
            assert_eq!(
                (h.version, &h.target[..], h.headers.get("host")),
                (Version::Http10, &b"/v"[..], Some(&b"x"[..]))
            );
            assert_eq!(n, request.len());
            let strict = parse_request_head(request.as_bytes(), &Limits::default());
            assert_eq!(strict.unwrap_err(), HeadError::Http10NotAllowed, "{version}");
        }
        // Prefixes wait for more; an incomplete head is not refused early.
        for partial in [&b"GET / HTTP/9"[..], b"GET / HTTP/9.", b"GET / HTTP/9.7\r\nHost: x\r\n"] {
            assert_eq!(parse_request_head(partial, &Limits::default()), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn versions_not_shaped_http_d_d_are_malformed() {
        for line in
            ["GET / HTTP/10.0", "GET / HTTP/9.77", "GET / http/1.1", "GET / HTTP/9x7", "GET / HTTP/a.1"]
        {
            assert_eq!(err(format!("{line}\r\n\r\n").as_bytes()), HeadError::Malformed, "{line}");
        }
    }

    #[test]
    fn garbage_request_line_is_malformed() {
        assert_eq!(err(b"GET  / HTTP/1.1\r\n\r\n"), HeadError::Malformed);
    }

    #[test]
    fn missing_target_is_malformed() {
        assert_eq!(err(b"GET HTTP/1.1\r\n\r\n"), HeadError::Malformed);
    }

    #[test]
    fn space_before_colon_is_refused() {
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"), HeadError::InvalidCharacters);
    }

    #[test]
    fn nul_in_value_is_refused() {
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: x\0y\r\n\r\n"), HeadError::InvalidCharacters);
    }

    #[test]
    fn bare_cr_in_value_is_refused() {
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"), HeadError::InvalidCharacters);
    }

    #[test]
    fn obs_fold_is_refused() {
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: x\r\n y\r\n\r\n"), HeadError::InvalidCharacters);
    }

    #[test]
    fn too_many_headers() {
        let l = Limits { max_headers: 2, ..limits() };
        let r = parse_request_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l);
        assert_eq!(r.unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn exactly_max_headers_is_fine() {
        let l = Limits { max_headers: 2, ..limits() };
        assert!(parse_request_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &l).unwrap().is_some());
    }

    #[test]
    fn many_headers_beyond_the_stack_slots() {
        let l = Limits { max_headers: 200, ..limits() };
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..150 {
            input.extend_from_slice(format!("h{i}: {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let (h, _) = parse_request_head(&input, &l).unwrap().unwrap();
        assert_eq!(h.headers.get("h149"), Some(&b"149"[..]));
    }

    const SMALL: Limits = Limits { max_head_bytes: 32, max_headers: 100, accept_http_10: true };

    #[test]
    fn incomplete_over_the_limit_is_too_large() {
        let long = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(parse_request_head(long, &SMALL).unwrap_err(), HeadError::HeadersTooLarge);
    }

    #[test]
    fn incomplete_at_the_limit_waits() {
        assert_eq!(
            parse_request_head(&b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..32], &SMALL),
            Ok(None)
        );
    }

    #[test]
    fn complete_head_over_the_limit_is_too_large() {
        let input = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(parse_request_head(input, &SMALL).unwrap_err(), HeadError::HeadersTooLarge);
    }

    #[test]
    fn head_within_the_limit_with_body_beyond_it_is_fine() {
        let mut input = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        assert!(parse_request_head(&input, &SMALL).unwrap().is_some());
    }

    #[test]
    fn limits_from_config_fields() {
        assert_eq!(
            Limits::new(60, 100, false),
            Limits { max_head_bytes: 61440, max_headers: 100, accept_http_10: false }
        );
    }

    fn response(input: &[u8]) -> ResponseHead {
        parse_response_head(input).unwrap().unwrap().0
    }

    #[test]
    fn parses_a_response() {
        let r = response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            (r.version, r.status, &r.reason[..], r.headers.get("content-length")),
            (Version::Http11, 404, &b"Not Found"[..], Some(&b"0"[..]))
        );
    }

    #[test]
    fn response_reason_may_be_missing() {
        assert_eq!(&response(b"HTTP/1.0 200\r\n\r\n").reason[..], b"");
    }

    #[test]
    fn response_reason_keeps_obs_text() {
        assert_eq!(&response(b"HTTP/1.1 200 \xe9t\xe9\r\n\r\n").reason[..], b"\xe9t\xe9");
    }

    #[test]
    fn response_incomplete_is_none() {
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
    }

    #[test]
    fn response_status_below_100_is_malformed() {
        assert_eq!(parse_response_head(b"HTTP/1.1 099 X\r\n\r\n").unwrap_err(), HeadError::Malformed);
    }

    #[test]
    fn response_over_80_kib_is_too_large() {
        let mut input = b"HTTP/1.1 200 OK\r\nA: ".to_vec();
        input.resize(81 * 1024, b'a');
        assert_eq!(parse_response_head(&input).unwrap_err(), HeadError::HeadersTooLarge);
    }
}
