//! Why a message was refused, and how Envoy would answer.

use std::fmt;

/// A message the codec refuses. Every variant maps to the status Envoy sends back to a downstream
/// client ([`HeadError::status`]) and to the short response-code-details string it logs
/// ([`HeadError::details`]). For a refused *response* from upstream the status is meaningless:
/// the caller answers 502 instead and closes the upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The start line or the header syntax is broken (also: a version not shaped `HTTP/D.D`).
    Malformed,
    /// A header name or value holds a byte no field may hold (CTL, NUL, bare CR).
    InvalidCharacters,
    /// The head did not end within the configured number of bytes.
    HeadersTooLarge,
    /// The head holds more header fields than configured.
    TooManyHeaders,
    /// An HTTP/1.0 request (or, as in Envoy, any `HTTP/D.D` version but 1.1, say `HTTP/9.7`)
    /// while `accept_http_10` is off.
    Http10NotAllowed,
    /// `content-length` is not a number, or several values disagree.
    InvalidContentLength,
    /// Both `content-length` and `transfer-encoding`: a request-smuggling shape, refused.
    ContentLengthAndTransferEncoding,
    /// A `transfer-encoding` the codec cannot frame safely: on CONNECT, on HTTP/1.0, or with
    /// `chunked` applied twice.
    InvalidTransferEncoding,
    /// A transfer coding whose last element is not `chunked`: the body length is unknowable.
    UnsupportedTransferEncoding,
    /// CONNECT with a non-zero `content-length`: a CONNECT body has no defined meaning.
    ConnectWithBody,
    /// A CONNECT target that is not `host:port`.
    InvalidAuthority,
    /// Broken chunked framing in a body.
    InvalidChunk,
}

impl HeadError {
    /// The status code of the local reply (400, 426, 431 or 501).
    pub fn status(&self) -> u16 {
        match self {
            HeadError::HeadersTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Http10NotAllowed => 426,
            HeadError::UnsupportedTransferEncoding => 501,
            HeadError::Malformed
            | HeadError::InvalidCharacters
            | HeadError::InvalidContentLength
            | HeadError::ContentLengthAndTransferEncoding
            | HeadError::InvalidTransferEncoding
            | HeadError::ConnectWithBody
            | HeadError::InvalidAuthority
            | HeadError::InvalidChunk => 400,
        }
    }

    /// Envoy's response-code-details string for this refusal (`%RESPONSE_CODE_DETAILS%`).
    pub fn details(&self) -> &'static str {
        match self {
            HeadError::Malformed | HeadError::InvalidContentLength | HeadError::InvalidChunk => {
                "http1.codec_error"
            }
            HeadError::InvalidCharacters => "http1.invalid_characters",
            HeadError::HeadersTooLarge => "http1.headers_too_large",
            HeadError::TooManyHeaders => "http1.too_many_headers",
            HeadError::Http10NotAllowed => "low_version",
            HeadError::ContentLengthAndTransferEncoding => "http1.content_length_and_chunked_not_allowed",
            HeadError::InvalidTransferEncoding | HeadError::UnsupportedTransferEncoding => {
                "http1.invalid_transfer_encoding"
            }
            HeadError::ConnectWithBody => "http1.body_disallowed",
            HeadError::InvalidAuthority => "http1.invalid_url",
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.details(), self.status())
    }
}

impl std::error::Error for HeadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(HeadError::Malformed.status(), 400);
        assert_eq!(HeadError::HeadersTooLarge.status(), 431);
        assert_eq!(HeadError::TooManyHeaders.status(), 431);
        assert_eq!(HeadError::Http10NotAllowed.status(), 426);
        assert_eq!(HeadError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HeadError::ConnectWithBody.status(), 400);
    }

    #[test]
    fn details_and_display() {
        assert_eq!(HeadError::HeadersTooLarge.details(), "http1.headers_too_large");
        assert_eq!(HeadError::Malformed.to_string(), "http1.codec_error (400)");
    }
}
