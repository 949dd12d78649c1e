//! Codecs: bytes in, protocol events out, and back. They know nothing of routing or pools.

pub(crate) mod h2;
pub mod http1;

use bytes::Bytes;

use http1::{BodyKind, HeadError};

/// What a downstream codec read for one stream of its connection. The stream id is the
/// codec's: HTTP/1.1 numbers requests in order, HTTP/2 and HTTP/3 use the wire's.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// A request head opens the stream, with its body's framing (or why that framing is
    /// refused: the head still counts as a request). The head itself waits in the codec for
    /// the manager to take: events stay small, and the head is moved once.
    Head(Result<BodyKind, HeadError>),
    /// A piece of the request body (never framing bytes).
    Data(Bytes),
    /// The request is complete.
    End,
}

/// A response the proxy writes itself, as a value: the connection's codec encodes it (with
/// the `date`, `server` and connection fields its protocol needs), so the connection manager
/// never writes protocol bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalReply<'a> {
    pub(crate) status: u16,
    /// `content-type`, when there is one.
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
    /// Fields of the reply's own, after the standard ones.
    pub(crate) extra: &'a [(&'a str, &'a str)],
    /// Whether a `content-length` frames the body; not for the `200` that opens a tunnel,
    /// whose body is the tunnel.
    pub(crate) sized: bool,
}
