//! Message heads: method, version, and an ordered header list.
//!
//! A parsed head costs two allocations: one buffer holding every header name and value (names
//! lower-cased in place) and the request target. Header entries are offsets into that buffer,
//! so a typical head (16 fields or fewer) needs no further allocation and dropping it is cheap.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// A request method. The standard ones are unit variants so that matching (above all on
/// CONNECT, which switches the connection to a tunnel) is a tag compare.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// Any other token, case preserved (methods are case-sensitive).
    Other(Box<str>),
}

impl Method {
    /// The method for a token as it appears on the wire. Standard methods never land in
    /// [`Method::Other`], so equality on `Method` is equality of tokens.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            other => Method::Other(other.into()),
        }
    }

    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(token) => token,
        }
    }

    /// CONNECT turns the connection into a tunnel once answered with 2xx.
    pub fn is_connect(&self) -> bool {
        matches!(self, Method::Connect)
    }
}

/// The protocol version of a received message. burrow always writes HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

/// A byte range in [`Headers`]' buffer. `u32` keeps an entry at 16 bytes; heads are capped far
/// below 4 GiB.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    name: Span,
    value: Span,
}

/// Header fields in wire order, duplicates kept. Names are stored lower-case (HTTP field names
/// are case-insensitive; lower case is also what HTTP/2 and Envoy send); lookups ignore case.
///
/// Removing a field does not reclaim its bytes: heads are short-lived, so a little slack beats
/// compaction.
#[derive(Clone, Default)]
pub struct Headers {
    buf: BytesMut,
    entries: SmallVec<[Entry; 16]>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Headers over a buffer the parser filled: `fields` are `(name, value)` byte ranges into
    /// `buf`, names already lower-cased.
    pub(crate) fn from_parsed(
        buf: BytesMut,
        fields: impl Iterator<Item = ((usize, usize), (usize, usize))>,
    ) -> Headers {
        let span = |(start, end): (usize, usize)| Span { start: start as u32, end: end as u32 };
        let entries = fields.map(|(name, value)| Entry { name: span(name), value: span(value) }).collect();
        Headers { buf, entries }
    }

    /// Number of fields (duplicates counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.buf[span.start as usize..span.end as usize]
    }

    /// Every `(name, value)` in wire order; names lower-case.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries.iter().map(|e| (self.bytes(e.name), self.bytes(e.value)))
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// Every value of `name` (any case), in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// Whether any value of `name` is a comma-separated list holding `token`, compared
    /// case-insensitively after trimming whitespace: `connection: keep-alive, Upgrade` holds
    /// `upgrade`.
    pub fn contains_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|value| {
            value.split(|&b| b == b',').any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Removes every field called `name` (any case); returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        let buf = &self.buf;
        self.entries.retain(|e| {
            !buf[e.name.start as usize..e.name.end as usize].eq_ignore_ascii_case(name.as_bytes())
        });
        self.entries.len() != before
    }

    /// Adds a field at the end, keeping any existing ones of the same name. `name` must be a
    /// token and `value` must not hold CR, LF or NUL: the writer does not re-check, so a bad
    /// value would split the serialized head.
    pub fn append(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        self.buf.reserve(name.len() + value.len());
        let name = self.push(name.as_bytes());
        self.buf[name.start as usize..].make_ascii_lowercase();
        let value = self.push(value);
        self.entries.push(Entry { name, value });
    }

    /// Replaces every field called `name` with one field at the end.
    pub fn insert(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }

    fn push(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len();
        self.buf.put_slice(bytes);
        let end = self.buf.len();
        assert!(end <= u32::MAX as usize, "header block over 4 GiB");
        Span { start: start as u32, end: end as u32 }
    }
}

/// Strips optional whitespace (SP / HTAB) at both ends.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))))
            .finish()
    }
}

/// A request head as received (or as built to send upstream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target exactly as on the wire: origin form (`/p?q`), absolute form
    /// (`http://h/p`), authority form for CONNECT (`host:443`) or `*`.
    pub target: Bytes,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    /// Whether the client lets the connection carry another request after this one: HTTP/1.1
    /// unless `connection: close`; HTTP/1.0 only with `connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}

/// A response head as received from upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    /// The reason phrase as received (possibly empty); informational only.
    pub reason: Bytes,
    pub headers: Headers,
}

impl ResponseHead {
    /// Whether the server keeps the connection open after this response (same rule as
    /// [`RequestHead::keep_alive`]).
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}

fn keep_alive(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => !headers.contains_token("connection", "close"),
        Version::Http10 => headers.contains_token("connection", "keep-alive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut h = Headers::new();
        h.append("Host", b"example.com");
        h.append("Connection", b"keep-alive, Upgrade");
        h.append("x-a", b"1");
        h.append("X-A", b"2");
        h
    }

    #[test]
    fn method_tokens_round_trip() {
        for token in ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PURGE"]
        {
            assert_eq!(Method::from_token(token).as_str(), token);
        }
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_token("get"), Method::Other("get".into()));
    }

    #[test]
    fn connect_is_detected() {
        assert!(Method::from_token("CONNECT").is_connect());
        assert!(!Method::Get.is_connect());
    }

    #[test]
    fn append_lowercases_names() {
        let h = sample();
        let names: Vec<&[u8]> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"host"[..], b"connection", b"x-a", b"x-a"]);
    }

    #[test]
    fn get_ignores_case_and_returns_first() {
        let h = sample();
        assert_eq!(h.get("HOST"), Some(&b"example.com"[..]));
        assert_eq!(h.get("x-a"), Some(&b"1"[..]));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn get_all_keeps_order() {
        assert_eq!(sample().get_all("x-a").collect::<Vec<_>>(), [b"1", b"2"]);
    }

    #[test]
    fn contains_token_splits_and_ignores_case() {
        let h = sample();
        assert!(h.contains_token("connection", "upgrade"));
        assert!(h.contains_token("Connection", "KEEP-ALIVE"));
        assert!(!h.contains_token("connection", "close"));
        assert!(!h.contains_token("connection", "keep"));
    }

    #[test]
    fn remove_drops_every_duplicate() {
        let mut h = sample();
        assert!(h.remove("X-a"));
        assert_eq!(h.len(), 2);
        assert!(!h.remove("x-a"));
    }

    #[test]
    fn insert_replaces() {
        let mut h = sample();
        h.insert("x-a", b"3");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), [b"3"]);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn equality_ignores_buffer_slack() {
        let mut a = sample();
        a.remove("x-a");
        let mut b = Headers::new();
        b.append("host", b"example.com");
        b.append("connection", b"keep-alive, Upgrade");
        assert_eq!(a, b);
    }

    #[test]
    fn trim_ows_strips_both_ends() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
    }

    fn request(version: Version, connection: Option<&[u8]>) -> RequestHead {
        let mut headers = Headers::new();
        if let Some(value) = connection {
            headers.append("connection", value);
        }
        RequestHead { method: Method::Get, target: Bytes::from_static(b"/"), version, headers }
    }

    #[test]
    fn http11_keeps_alive_by_default() {
        assert!(request(Version::Http11, None).keep_alive());
    }

    #[test]
    fn http11_close_ends_the_connection() {
        assert!(!request(Version::Http11, Some(b"Close")).keep_alive());
    }

    #[test]
    fn http10_closes_by_default() {
        assert!(!request(Version::Http10, None).keep_alive());
    }

    #[test]
    fn http10_keep_alive_opts_in() {
        assert!(request(Version::Http10, Some(b"keep-alive")).keep_alive());
    }
}
