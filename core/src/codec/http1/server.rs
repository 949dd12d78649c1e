//! The server side of one downstream HTTP/1.1 connection: request heads and bodies in,
//! response framing and local replies out. One request at a time: what a client sends ahead
//! of its turn (pipelined heads) waits in the read-ahead buffer until the manager asks for
//! the next head.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::{encode_chunk, encode_reply, last_chunk, parse_request_head, request_body};
use super::{BodyDecoder, BodyKind, Decoded, HeadError, Limits, RequestHead};
use crate::codec::LocalReply;

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

/// A request head read off the connection, with how its body is framed (or why the framing
/// is refused: the head still counts as a request).
pub(crate) type IncomingHead = (RequestHead, Result<BodyKind, HeadError>);

/// Encoded pieces of a response body: a chunk is the payload with its two frames around it.
pub(crate) type Pieces = SmallVec<[Bytes; 3]>;

pub(crate) struct ServerCodec {
    limits: Limits,
    /// Bytes of a request head not yet complete, or read ahead of the current request.
    buf: BytesMut,
    /// When the first byte of the request head being read arrived (for
    /// `request_headers_timeout`).
    head_started: Option<Instant>,
    /// The body of the current request while it is being read.
    body: Option<BodyDecoder>,
    /// How the current response's body is framed, once its head is sent.
    framing: DownFraming,
}

impl ServerCodec {
    pub(crate) fn new(limits: Limits) -> ServerCodec {
        ServerCodec {
            limits,
            buf: BytesMut::new(),
            head_started: None,
            body: None,
            framing: DownFraming::AsIs,
        }
    }

    /// Nothing is buffered: no head is arriving and nothing was read ahead.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// When the head being read started arriving.
    pub(crate) fn head_started(&self) -> Option<Instant> {
        self.head_started
    }

    /// Bytes that wait for the next head (or for a tunnel to take them).
    pub(crate) fn read_ahead(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next request head, if a whole one is buffered. Envoy starts a stream, and its
    /// request headers timer, at the head's first byte: `now` is that time if none started.
    pub(crate) fn next_head(&mut self, now: Instant) -> Result<Option<IncomingHead>, HeadError> {
        self.head_started.get_or_insert(now);
        let Some((head, consumed)) = parse_request_head(&self.buf, &self.limits)? else {
            return Ok(None);
        };
        let _ = self.buf.split_to(consumed);
        self.head_started = None;
        let body = request_body(&head);
        Ok(Some((head, body)))
    }

    /// Reads the current request's body as `kind` from here on; returns what was read past
    /// its head, to be decoded next.
    pub(crate) fn start_body(&mut self, kind: BodyKind) -> Bytes {
        self.body = (kind != BodyKind::Empty).then(|| BodyDecoder::new(kind));
        self.take_buffered()
    }

    /// The next piece of the current request's body off the front of `data`; `None` when no
    /// body is being read (the bytes belong to a later request). After the end, the rest of
    /// `data` is the next request's.
    pub(crate) fn decode_body(&mut self, data: &mut Bytes) -> Option<Result<Decoded, HeadError>> {
        let decoded = self.body.as_mut()?.decode(data);
        if matches!(decoded, Ok(Decoded::End)) {
            self.body = None;
        }
        Some(decoded)
    }

    /// Everything buffered, as one piece (what came with a CONNECT head belongs to its tunnel).
    pub(crate) fn take_buffered(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Drops what was buffered: the connection reads no more heads.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.head_started = None;
    }

    /// A tunnel reads no more heads: give the buffer's memory back.
    pub(crate) fn release(&mut self) {
        self.buf = BytesMut::new();
        self.body = None;
    }

    /// A response head is sent with this body framing.
    pub(crate) fn response_framing(&mut self, framing: DownFraming) {
        self.framing = framing;
    }

    /// A piece of the response body, framed for the wire without copying it.
    pub(crate) fn encode_data(&self, data: Bytes) -> Pieces {
        let mut out = Pieces::new();
        if self.framing == DownFraming::Chunked {
            encode_chunk(data, &mut out);
        } else {
            out.push(data);
        }
        out
    }

    /// The end of the response body: the last chunk if it is chunked.
    pub(crate) fn encode_end(&mut self) -> Option<Bytes> {
        let framing = std::mem::replace(&mut self.framing, DownFraming::AsIs);
        (framing == DownFraming::Chunked).then(last_chunk)
    }

    /// A reply of the proxy's own; with `close` it says the connection ends after it.
    pub(crate) fn encode_reply(&self, reply: &LocalReply<'_>, date: &[u8], close: bool) -> Bytes {
        encode_reply(reply, date, close)
    }

    /// The interim answer to `Expect: 100-continue`.
    pub(crate) fn encode_continue(&self) -> Bytes {
        Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> ServerCodec {
        ServerCodec::new(Limits::default())
    }

    #[test]
    fn a_head_split_across_reads_is_parsed_once_whole_and_timed_from_its_first_byte() {
        let mut c = codec();
        let t0 = burrow_sim::epoch();
        c.read_ahead(b"GET / HTTP/1.1\r\nho");
        assert!(c.next_head(t0).unwrap().is_none());
        assert_eq!(c.head_started(), Some(t0));
        c.read_ahead(b"st: h\r\n\r\nGET /next");
        let (head, body) = c.next_head(t0 + std::time::Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(&head.target[..], b"/");
        assert_eq!(body.unwrap(), BodyKind::Empty);
        assert_eq!(c.head_started(), None);
        assert_eq!(&c.take_buffered()[..], b"GET /next");
        assert!(c.is_empty());
    }

    #[test]
    fn a_chunked_body_is_decoded_then_the_rest_waits_for_the_next_head() {
        let mut c = codec();
        c.read_ahead(b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n");
        let (_, body) = c.next_head(burrow_sim::epoch()).unwrap().unwrap();
        let mut rest = c.start_body(body.unwrap());
        assert_eq!(c.decode_body(&mut rest), Some(Ok(Decoded::Data(Bytes::from_static(b"abc")))));
        assert_eq!(c.decode_body(&mut rest), Some(Ok(Decoded::NeedMore)));
        let mut more = Bytes::from_static(b"0\r\n\r\nGET");
        assert_eq!(c.decode_body(&mut more), Some(Ok(Decoded::End)));
        assert_eq!(&more[..], b"GET");
        assert_eq!(c.decode_body(&mut more), None, "no body after the end");
    }

    #[test]
    fn a_bad_framing_still_yields_the_head() {
        let mut c = codec();
        c.read_ahead(b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n");
        let (_, body) = c.next_head(burrow_sim::epoch()).unwrap().unwrap();
        assert!(body.is_err());
    }

    #[test]
    fn a_chunked_response_is_framed_and_ended_with_the_last_chunk() {
        let mut c = codec();
        c.response_framing(DownFraming::Chunked);
        let pieces = c.encode_data(Bytes::from_static(b"hello"));
        assert_eq!(pieces.concat(), b"5\r\nhello\r\n");
        assert_eq!(c.encode_end().as_deref(), Some(&b"0\r\n\r\n"[..]));
        c.response_framing(DownFraming::AsIs);
        assert_eq!(c.encode_data(Bytes::from_static(b"x")).concat(), b"x");
        assert_eq!(c.encode_end(), None);
    }
}
