//! Head serialization. burrow always speaks HTTP/1.1 on the wire, whatever the peer sent (as
//! Envoy does), and writes header names as stored: lower-case.
//!
//! The writers trust their input: a parsed head is valid by construction, and
//! [`Headers::append`] documents what a caller must not add.

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{Headers, Method};
use crate::codec::LocalReply;

/// The one HTTP/1.1 head serializer: status or request line, fields, blank line, written
/// straight into the output buffer (fields are copied once, from wherever they are, with no
/// intermediate header map). Proxied heads, local replies and test peers all go through it.
pub struct HeadWriter(BytesMut);

impl HeadWriter {
    /// A writer whose buffer starts with room for `capacity` bytes.
    pub fn new(capacity: usize) -> HeadWriter {
        HeadWriter(BytesMut::with_capacity(capacity))
    }

    /// `METHOD target HTTP/1.1`.
    pub fn request_line(&mut self, method: &Method, target: &[u8]) {
        self.0.put_slice(method.as_str().as_bytes());
        self.0.put_u8(b' ');
        self.0.put_slice(target);
        self.0.put_slice(b" HTTP/1.1\r\n");
    }

    /// `HTTP/1.1 status reason`.
    pub fn status_line(&mut self, status: u16, reason: &[u8]) {
        let mut digits = [0u8; 20];
        self.0.put_slice(b"HTTP/1.1 ");
        self.0.put_slice(decimal(u64::from(status), &mut digits));
        self.0.put_u8(b' ');
        self.0.put_slice(reason);
        self.0.put_slice(b"\r\n");
    }

    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        self.0.put_slice(name);
        self.0.put_slice(b": ");
        self.0.put_slice(value);
        self.0.put_slice(b"\r\n");
    }

    /// A field whose value is a number, formatted without allocating.
    pub fn number_field(&mut self, name: &[u8], value: u64) {
        let mut digits = [0u8; 20];
        let value = decimal(value, &mut digits);
        self.field(name, value);
    }

    pub fn fields(&mut self, headers: &Headers) {
        for (name, value) in headers.iter() {
            self.field(name, value);
        }
    }

    /// Ends the head; `body` (possibly empty) follows it in the same buffer.
    pub fn finish(mut self, body: &[u8]) -> Bytes {
        self.0.put_slice(b"\r\n");
        self.0.put_slice(body);
        self.0.freeze()
    }
}

/// A local reply as HTTP/1.1, in Envoy's shape: `content-length` (when sized),
/// `content-type`, `date`, `server: envoy` (Envoy's default `server_name`), the reply's own
/// fields and, when the connection ends with it, `connection: close`.
pub(crate) fn encode_reply(reply: &LocalReply<'_>, date: &[u8], close: bool) -> Bytes {
    let mut head = HeadWriter::new(160 + reply.body.len());
    head.status_line(reply.status, reason_phrase(reply.status).as_bytes());
    if reply.sized {
        head.number_field(b"content-length", reply.body.len() as u64);
    }
    if let Some(content_type) = reply.content_type {
        head.field(b"content-type", content_type.as_bytes());
    }
    head.field(b"date", date);
    head.field(b"server", b"envoy");
    for (name, value) in reply.extra {
        head.field(name.as_bytes(), value.as_bytes());
    }
    if close {
        head.field(b"connection", b"close");
    }
    head.finish(reply.body)
}

/// Appends `METHOD target HTTP/1.1`, the fields and the blank line to `out`.
pub fn write_request_head(method: &Method, target: &[u8], headers: &Headers, out: &mut BytesMut) {
    let mut head = HeadWriter::new(method.as_str().len() + target.len() + 13 + fields_len(headers));
    head.request_line(method, target);
    head.fields(headers);
    out.put_slice(&head.finish(b""));
}

/// Appends `HTTP/1.1 status reason`, the fields and the blank line to `out`. For a reply of
/// burrow's own, pass [`reason_phrase`]`(status)`.
pub fn write_response_head(status: u16, reason: &[u8], headers: &Headers, out: &mut BytesMut) {
    let mut head = HeadWriter::new(17 + reason.len() + fields_len(headers));
    head.status_line(status, reason);
    head.fields(headers);
    out.put_slice(&head.finish(b""));
}

fn fields_len(headers: &Headers) -> usize {
    headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum()
}

/// `n` in decimal, written into the end of `buf` without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// The IANA reason phrase of a status code; `Unknown` (as Envoy writes) for an unregistered one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        // RFC 9110 renamed it "Content Too Large"; Envoy (and clients) still say this.
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in fields {
            h.append(name, value.as_bytes());
        }
        h
    }

    #[test]
    fn request_head_bytes() {
        let mut out = BytesMut::new();
        let h = headers(&[("Host", "example.com:443"), ("x-a", "")]);
        write_request_head(&Method::Connect, b"example.com:443", &h, &mut out);
        assert_eq!(&out[..], b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\nx-a: \r\n\r\n");
    }

    #[test]
    fn request_head_without_fields() {
        let mut out = BytesMut::new();
        write_request_head(&Method::Other("PURGE".into()), b"/x", &Headers::new(), &mut out);
        assert_eq!(&out[..], b"PURGE /x HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn response_head_bytes() {
        let mut out = BytesMut::new();
        let h = headers(&[("content-length", "0"), ("connection", "close")]);
        write_response_head(431, reason_phrase(431).as_bytes(), &h, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_head_with_empty_reason() {
        let mut out = BytesMut::new();
        write_response_head(200, b"", &Headers::new(), &mut out);
        assert_eq!(&out[..], b"HTTP/1.1 200 \r\n\r\n");
    }

    #[test]
    fn writers_append() {
        let mut out = BytesMut::from(&b"x"[..]);
        write_response_head(101, reason_phrase(101).as_bytes(), &Headers::new(), &mut out);
        assert_eq!(&out[..], b"xHTTP/1.1 101 Switching Protocols\r\n\r\n");
    }

    #[test]
    fn decimal_digits() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(65535, &mut buf), b"65535");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }

    #[test]
    fn reason_phrases() {
        for (status, phrase) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (599, "Unknown"),
        ] {
            assert_eq!(reason_phrase(status), phrase);
        }
    }
}
