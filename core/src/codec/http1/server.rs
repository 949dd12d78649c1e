//! The server side of one downstream HTTP/1.1 connection: bytes in, stream events out (a head,
//! body pieces, the end), response framing and local replies out. One request at a time: what
//! a client sends ahead of its turn (pipelined heads) waits in the buffer until the manager
//! lets the next request be read.

use std::mem;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

use super::{encode_chunk, encode_reply, last_chunk, parse_request_head, request_body};
use super::{BodyDecoder, BodyKind, Decoded, HeadError, Limits, RequestHead};
use crate::codec::{LocalReply, StreamEvent};

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

/// Encoded pieces of a response body: a chunk is the payload with its two frames around it.
pub(crate) type Pieces = SmallVec<[Bytes; 3]>;

pub(crate) struct ServerCodec {
    limits: Limits,
    /// Bytes of a request head not yet complete, or read ahead of the current request.
    buf: BytesMut,
    /// Body bytes as they were read, decoded without a copy (they come before `buf`).
    input: Bytes,
    /// When the first byte of the request head being read arrived (for
    /// `request_headers_timeout`).
    head_started: Option<Instant>,
    read: Read,
    /// The head of the request just opened, until the manager takes it. The box is made with
    /// the first head and reused for every later one: no allocation per request, and a
    /// connection that holds no head (idle, or a tunnel) holds 8 bytes for it, not 360.
    head: Option<Box<Option<RequestHead>>>,
    /// Requests read so far: the current one's stream id.
    streams: u32,
    /// How the current response's body is framed, once its head is sent.
    framing: DownFraming,
}

/// Where the request side of the connection is.
enum Read {
    /// Waiting for the next request head.
    Head,
    /// Reading the current request's body.
    Body(BodyDecoder),
    /// The current request is read whole (or refused); the next head waits for its turn.
    Done,
}

impl ServerCodec {
    pub(crate) fn new(limits: Limits) -> ServerCodec {
        ServerCodec {
            limits,
            buf: BytesMut::new(),
            input: Bytes::new(),
            head_started: None,
            read: Read::Head,
            head: None,
            streams: 0,
            framing: DownFraming::AsIs,
        }
    }

    /// Nothing is buffered: no head is arriving and nothing was read ahead.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.input.is_empty()
    }

    /// When the head being read started arriving.
    pub(crate) fn head_started(&self) -> Option<Instant> {
        self.head_started
    }

    /// The current request is read whole: what is buffered belongs to a later one.
    pub(crate) fn request_done(&self) -> bool {
        matches!(self.read, Read::Done)
    }

    /// Bytes off the connection. Body bytes are kept as they are; head bytes are gathered.
    pub(crate) fn read(&mut self, data: Bytes) {
        if matches!(self.read, Read::Body(_)) && self.is_empty() {
            self.input = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// The next event off what was read, if there is one. Envoy starts a stream, and its
    /// request headers timer, at the head's first byte: `now` is that time if none started.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Result<(u32, StreamEvent), HeadError>> {
        let event = match &mut self.read {
            Read::Done => return None,
            Read::Head => {
                if self.buf.is_empty() {
                    return None;
                }
                self.head_started.get_or_insert(now);
                let (head, consumed) = match parse_request_head(&self.buf, &self.limits) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => return None,
                    Err(error) => return Some(Err(error)),
                };
                self.buf.advance(consumed);
                self.head_started = None;
                self.streams = self.streams.wrapping_add(1);
                let body = request_body(&head);
                self.read = match body {
                    Ok(kind) => Read::Body(BodyDecoder::new(kind)),
                    Err(_) => Read::Done,
                };
                **self.head.get_or_insert_with(Box::default) = Some(head);
                StreamEvent::Head(body)
            }
            Read::Body(decoder) => {
                if self.input.is_empty() && !self.buf.is_empty() {
                    self.input = self.buf.split().freeze();
                }
                match decoder.decode(&mut self.input) {
                    Ok(Decoded::Data(data)) => StreamEvent::Data(data),
                    Ok(Decoded::NeedMore) => return None,
                    Ok(Decoded::End) => {
                        self.read = Read::Done;
                        // What follows belongs to the next request.
                        self.unread_input();
                        StreamEvent::End
                    }
                    Err(error) => {
                        self.read = Read::Done;
                        return Some(Err(error));
                    }
                }
            }
        };
        Some(Ok((self.streams, event)))
    }

    /// The head of the request just opened (see [`StreamEvent::Head`]).
    pub(crate) fn take_head(&mut self) -> Option<RequestHead> {
        self.head.as_mut()?.take()
    }

    /// The current request's body is read as `kind` from here on, whatever its head said (an
    /// upgrade's body is the tunnel).
    pub(crate) fn set_body(&mut self, kind: BodyKind) {
        self.read = Read::Body(BodyDecoder::new(kind));
    }

    /// The current request is answered: the next head may be read.
    pub(crate) fn next_request(&mut self) {
        self.read = Read::Head;
    }

    /// Everything buffered, as one piece (what came with a CONNECT head belongs to its tunnel).
    pub(crate) fn take_buffered(&mut self) -> Bytes {
        if self.buf.is_empty() {
            return mem::take(&mut self.input);
        }
        self.unread_input();
        self.buf.split().freeze()
    }

    /// Puts body bytes not decoded back in front of the buffer (copied: this happens only
    /// when a request ends inside a read).
    fn unread_input(&mut self) {
        if !self.input.is_empty() {
            let later = mem::replace(&mut self.buf, BytesMut::from(&self.input[..]));
            self.buf.extend_from_slice(&later);
            self.input = Bytes::new();
        }
    }

    /// Drops what was buffered: the connection reads no more heads.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.input = Bytes::new();
        self.head_started = None;
        self.read = Read::Done;
    }

    /// A tunnel reads no more heads: the buffer's memory is given back too.
    pub(crate) fn release(&mut self) {
        self.clear();
        self.buf = BytesMut::new();
        self.head = None;
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

    fn event(c: &mut ServerCodec) -> Option<(u32, StreamEvent)> {
        c.poll(burrow_sim::epoch()).map(|e| e.expect("no error"))
    }

    fn data(bytes: &'static [u8]) -> StreamEvent {
        StreamEvent::Data(Bytes::from_static(bytes))
    }

    #[test]
    fn a_head_split_across_reads_is_parsed_once_whole_and_timed_from_its_first_byte() {
        let mut c = codec();
        let t0 = burrow_sim::epoch();
        c.read(Bytes::from_static(b"GET / HTTP/1.1\r\nho"));
        assert!(c.poll(t0).is_none());
        assert_eq!(c.head_started(), Some(t0));
        c.read(Bytes::from_static(b"st: h\r\n\r\nGET /next"));
        let Some(Ok((1, StreamEvent::Head(body)))) = c.poll(t0 + std::time::Duration::from_secs(1)) else {
            panic!("a head")
        };
        assert_eq!(&c.take_head().expect("the head").target[..], b"/");
        assert_eq!(body.unwrap(), BodyKind::Empty);
        assert_eq!(c.head_started(), None);
        assert_eq!(event(&mut c), Some((1, StreamEvent::End)), "no body: the request ends with its head");
        assert!(c.request_done());
        assert_eq!(event(&mut c), None, "the next head waits for its turn");
        c.next_request();
        assert_eq!(event(&mut c), None, "and is not whole yet");
        assert_eq!(&c.take_buffered()[..], b"GET /next");
        assert!(c.is_empty());
    }

    #[test]
    fn a_chunked_body_is_decoded_then_the_rest_waits_for_the_next_head() {
        let mut c = codec();
        c.read(Bytes::from_static(
            b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        ));
        assert!(matches!(event(&mut c), Some((1, StreamEvent::Head(Ok(BodyKind::Chunked))))));
        assert_eq!(event(&mut c), Some((1, data(b"abc"))));
        assert_eq!(event(&mut c), None);
        c.read(Bytes::from_static(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n"));
        assert_eq!(event(&mut c), Some((1, StreamEvent::End)));
        assert_eq!(event(&mut c), None, "no body after the end");
        c.next_request();
        assert!(matches!(event(&mut c), Some((2, StreamEvent::Head(Ok(BodyKind::Empty))))));
    }

    #[test]
    fn body_bytes_are_handed_on_as_read_not_copied() {
        let mut c = codec();
        c.read(Bytes::from_static(b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\n"));
        assert!(matches!(event(&mut c), Some((1, StreamEvent::Head(..)))));
        let body = Bytes::from(b"0123456789".to_vec());
        let at = body.as_ptr();
        c.read(body);
        let Some((1, StreamEvent::Data(piece))) = event(&mut c) else { panic!("a body piece") };
        assert_eq!(piece.as_ptr(), at);
        assert_eq!(event(&mut c), Some((1, StreamEvent::End)));
    }

    #[test]
    fn an_upgrade_body_is_read_as_the_tunnel_it_becomes() {
        let mut c = codec();
        c.read(Bytes::from_static(b"GET / HTTP/1.1\r\nupgrade: x\r\nconnection: upgrade\r\n\r\nearly"));
        assert!(matches!(event(&mut c), Some((1, StreamEvent::Head(Ok(BodyKind::Empty))))));
        c.set_body(BodyKind::Tunnel);
        assert_eq!(event(&mut c), Some((1, data(b"early"))));
        assert_eq!(event(&mut c), None);
    }

    #[test]
    fn a_bad_framing_still_yields_the_head_and_reads_no_further() {
        let mut c = codec();
        c.read(Bytes::from_static(b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx"));
        assert!(matches!(event(&mut c), Some((1, StreamEvent::Head(Err(_))))));
        assert_eq!(event(&mut c), None);
    }

    #[test]
    fn a_bad_chunk_is_an_error_of_the_current_request() {
        let mut c = codec();
        c.read(Bytes::from_static(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"));
        assert!(matches!(event(&mut c), Some((1, StreamEvent::Head(..)))));
        assert!(matches!(c.poll(burrow_sim::epoch()), Some(Err(_))));
        assert!(c.poll(burrow_sim::epoch()).is_none());
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
