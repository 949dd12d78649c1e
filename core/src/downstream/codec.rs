//! The codec of a downstream HTTP connection, whatever its protocol: the connection manager
//! hands it the bytes read and takes stream events (a head, body pieces, the end, each for a
//! stream id) off it, and writes responses only through it, so it never parses or frames bytes.
//! HTTP/1.1 now; HTTP/2 and HTTP/3 are more variants.

use std::time::Instant;

use bytes::Bytes;

use crate::codec::http1::server::{Pieces, ServerCodec};
use crate::codec::http1::{BodyKind, HeadError, Limits, RequestHead, ResponseHead};
use crate::codec::{LocalReply, StreamEvent};
use crate::downstream::headers::{self, ResponseContext};

pub(crate) enum DownstreamCodec {
    Http1(ServerCodec),
}

impl DownstreamCodec {
    pub(crate) fn http1(limits: Limits) -> DownstreamCodec {
        DownstreamCodec::Http1(ServerCodec::new(limits))
    }

    /// Nothing is buffered: closing the connection between requests loses nothing.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            DownstreamCodec::Http1(c) => c.is_empty(),
        }
    }

    /// When the request head being read started arriving.
    pub(crate) fn head_started(&self) -> Option<Instant> {
        match self {
            DownstreamCodec::Http1(c) => c.head_started(),
        }
    }

    /// Bytes off the connection, for [`Self::poll`] to make events of.
    pub(crate) fn read(&mut self, data: Bytes) {
        match self {
            DownstreamCodec::Http1(c) => c.read(data),
        }
    }

    /// The next event for one of the connection's streams, once one is read whole; an error
    /// ends the connection's reading.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Result<(u32, StreamEvent), HeadError>> {
        match self {
            DownstreamCodec::Http1(c) => c.poll(now),
        }
    }

    /// The head of the stream just opened, once per [`StreamEvent::Head`].
    pub(crate) fn take_head(&mut self) -> Option<RequestHead> {
        match self {
            DownstreamCodec::Http1(c) => c.take_head(),
        }
    }

    /// The stream just opened reads its body as `kind` (an upgrade's body is its tunnel).
    pub(crate) fn set_body(&mut self, kind: BodyKind) {
        match self {
            DownstreamCodec::Http1(c) => c.set_body(kind),
        }
    }

    /// HTTP/1.1 reads one request at a time: the one read is answered, read the next.
    pub(crate) fn next_request(&mut self) {
        match self {
            DownstreamCodec::Http1(c) => c.next_request(),
        }
    }

    /// The current request is read whole: what is buffered waits for a later one.
    pub(crate) fn request_done(&self) -> bool {
        match self {
            DownstreamCodec::Http1(c) => c.request_done(),
        }
    }

    /// Everything buffered (what came with a CONNECT head belongs to its tunnel).
    pub(crate) fn take_buffered(&mut self) -> Bytes {
        match self {
            DownstreamCodec::Http1(c) => c.take_buffered(),
        }
    }

    /// Drops what was buffered: the connection reads no more requests.
    pub(crate) fn clear(&mut self) {
        match self {
            DownstreamCodec::Http1(c) => c.clear(),
        }
    }

    /// The connection became a tunnel: the codec's buffers are given back.
    pub(crate) fn release(&mut self) {
        match self {
            DownstreamCodec::Http1(c) => c.release(),
        }
    }

    /// The response head as the client gets it, rewritten as Envoy does and serialized.
    pub(crate) fn response_head(
        &mut self,
        head: ResponseHead,
        body: BodyKind,
        cx: &ResponseContext<'_>,
    ) -> Bytes {
        match self {
            DownstreamCodec::Http1(c) => {
                let (bytes, framing) = headers::downstream_response(head, body, cx);
                c.response_framing(framing);
                bytes
            }
        }
    }

    /// A piece of the response body as wire pieces.
    pub(crate) fn encode_data(&self, data: Bytes) -> Pieces {
        match self {
            DownstreamCodec::Http1(c) => c.encode_data(data),
        }
    }

    /// What ends the response body on the wire, if anything.
    pub(crate) fn encode_end(&mut self) -> Option<Bytes> {
        match self {
            DownstreamCodec::Http1(c) => c.encode_end(),
        }
    }

    /// A reply of the proxy's own; with `close` the connection ends after it.
    pub(crate) fn encode_reply(&self, reply: &LocalReply<'_>, date: &[u8], close: bool) -> Bytes {
        match self {
            DownstreamCodec::Http1(c) => c.encode_reply(reply, date, close),
        }
    }

    /// The interim answer to `Expect: 100-continue`.
    pub(crate) fn encode_continue(&self) -> Bytes {
        match self {
            DownstreamCodec::Http1(c) => c.encode_continue(),
        }
    }
}
