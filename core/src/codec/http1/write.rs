//! Head serialization. burrow always speaks HTTP/1.1 on the wire, whatever the peer sent (as
//! Envoy does), and writes header names as stored: lower-case.
//!
//! The writers trust their input: a parsed head is valid by construction, and
//! [`Headers::append`] documents what a caller must not add.

use bytes::{BufMut, BytesMut};

use super::head::{Headers, Method};

/// Appends `METHOD target HTTP/1.1`, the fields and the blank line to `out`.
pub fn write_request_head(method: &Method, target: &[u8], headers: &Headers, out: &mut BytesMut) {
    let method = method.as_str().as_bytes();
    out.reserve(method.len() + 1 + target.len() + 11 + fields_len(headers) + 2);
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(target);
    out.put_slice(b" HTTP/1.1\r\n");
    write_fields(headers, out);
}

/// Appends `HTTP/1.1 status reason`, the fields and the blank line to `out`. For a reply of
/// burrow's own, pass [`reason_phrase`]`(status)`.
pub fn write_response_head(status: u16, reason: &[u8], headers: &Headers, out: &mut BytesMut) {
    let mut digits = [0u8; 5];
    let status = decimal(status, &mut digits);
    out.reserve(9 + status.len() + 1 + reason.len() + 2 + fields_len(headers) + 2);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status);
    out.put_u8(b' ');
    out.put_slice(reason);
    out.put_slice(b"\r\n");
    write_fields(headers, out);
}

fn fields_len(headers: &Headers) -> usize {
    headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum()
}

fn write_fields(headers: &Headers, out: &mut BytesMut) {
    for (name, value) in headers.iter() {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
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
        let mut buf = [0; 5];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(65535, &mut buf), b"65535");
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
