//! Reading HTTP/1.1 responses on an upstream connection: bytes in, response events out, pulled
//! one at a time by the stream the connection is bound to.

use std::mem;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::http1::{self, BodyDecoder, BodyKind, Decoded, Method, ResponseHead};

/// What a response read produced, in order.
#[derive(Debug)]
pub(crate) enum UpEvent {
    /// A final response head (1xx interim responses other than 101 are dropped). After a
    /// `101`, or a 2xx to a CONNECT (kind `Tunnel`), the connection is a raw pipe: what
    /// follows is `Data`.
    Head(Box<ResponseHead>, BodyKind),
    /// A piece of the response body (never framing bytes), or of the pipe after a `101`.
    Data(Bytes),
    /// The response is complete.
    End,
    /// The upstream broke the protocol (or sent bytes when no request was outstanding).
    Error,
    /// The upstream did nothing with the request (an HTTP/2 stream refused, or left out by a
    /// GOAWAY): it may be sent again, elsewhere.
    Refused,
}

/// What the upstream's close means for the response outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtEof {
    /// No response was outstanding: a clean close.
    Idle,
    /// The close ended a body read until close: an `End` is ready to be read.
    Ended,
    /// A response (or its head) was cut short.
    Cut,
}

/// The response side of one upstream HTTP/1.1 connection.
#[derive(Default)]
pub(crate) struct ResponseReader {
    /// Bytes of a response head not yet complete.
    buf: BytesMut,
    /// Body bytes as they were read, decoded without a copy.
    input: Bytes,
    state: ReadState,
}

#[derive(Default)]
enum ReadState {
    /// No request outstanding.
    #[default]
    Idle,
    /// Waiting for the head of the response to a request with this method.
    Head(Method),
    Body(BodyDecoder),
    /// Switched protocols; no longer HTTP.
    Upgraded,
    /// The close ended a body read until close; its `End` is still to be read.
    EndAtClose,
    /// The upstream closed its side: nothing more can come.
    Closed,
    Failed,
}

impl ResponseReader {
    /// A request was sent: its response comes next.
    pub(crate) fn expect(&mut self, method: Method) {
        debug_assert!(matches!(self.state, ReadState::Idle));
        self.state = ReadState::Head(method);
    }

    /// No response is outstanding and nothing unread: reusable between requests.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, ReadState::Idle) && self.buf.is_empty() && self.input.is_empty()
    }

    /// Bytes off the connection. Heads are gathered in one buffer; bodies never are.
    pub(crate) fn read(&mut self, data: Bytes) {
        if matches!(self.state, ReadState::Head(_)) || !self.buf.is_empty() {
            self.buf.extend_from_slice(&data);
        } else if self.input.is_empty() {
            self.input = data;
        } else {
            // The stream has not taken what came before (it is paused): keep both, in order.
            let mut joined = BytesMut::from(&self.input[..]);
            joined.extend_from_slice(&data);
            self.input = joined.freeze();
        }
    }

    /// The next event off what was read, if there is one.
    pub(crate) fn poll(&mut self) -> Option<UpEvent> {
        loop {
            match &mut self.state {
                ReadState::Idle | ReadState::Closed | ReadState::Failed => {
                    if self.input.is_empty() && self.buf.is_empty() {
                        return None;
                    }
                    self.input = Bytes::new();
                    self.buf.clear();
                    self.state = ReadState::Failed;
                    return Some(UpEvent::Error);
                }
                ReadState::Upgraded => {
                    return (!self.input.is_empty()).then(|| UpEvent::Data(mem::take(&mut self.input)));
                }
                ReadState::EndAtClose => {
                    if !self.input.is_empty() {
                        return Some(UpEvent::Data(mem::take(&mut self.input)));
                    }
                    self.state = ReadState::Closed;
                    return Some(UpEvent::End);
                }
                ReadState::Head(method) => {
                    if self.buf.is_empty() {
                        return None;
                    }
                    let method = method.clone();
                    let (head, consumed) = match http1::parse_response_head(&self.buf) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => return None,
                        Err(_) => return Some(self.fail()),
                    };
                    self.buf.advance(consumed);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    // A `101`, or a 2xx to a CONNECT (the content-length and transfer-encoding
                    // of which mean nothing, RFC 9110 §9.3.6): the connection is a pipe now.
                    let tunnel =
                        head.status == 101 || method.is_connect() && (200..300).contains(&head.status);
                    let kind = if tunnel {
                        self.state = ReadState::Upgraded;
                        BodyKind::Tunnel
                    } else {
                        match http1::response_body(&method, &head) {
                            Ok(kind) => {
                                self.state = ReadState::Body(BodyDecoder::new(kind));
                                kind
                            }
                            Err(_) => return Some(self.fail()),
                        }
                    };
                    if !self.buf.is_empty() {
                        self.input = self.buf.split().freeze();
                    }
                    return Some(UpEvent::Head(Box::new(head), kind));
                }
                ReadState::Body(decoder) => {
                    return match decoder.decode(&mut self.input) {
                        Ok(Decoded::Data(data)) => Some(UpEvent::Data(data)),
                        Ok(Decoded::NeedMore) => None,
                        Ok(Decoded::End) => {
                            // Anything after the end was not asked for: the next poll says so.
                            self.state = ReadState::Idle;
                            Some(UpEvent::End)
                        }
                        Err(_) => Some(self.fail()),
                    };
                }
            }
        }
    }

    fn fail(&mut self) -> UpEvent {
        self.state = ReadState::Failed;
        self.buf.clear();
        self.input = Bytes::new();
        UpEvent::Error
    }

    /// What was read and not taken: after a `101`, the first bytes of the pipe.
    pub(crate) fn take_unread(&mut self) -> Bytes {
        mem::take(&mut self.input)
    }

    /// The upstream closed its side: that ends a read-until-close body; anything else
    /// outstanding is cut short.
    pub(crate) fn eof(&mut self) -> AtEof {
        match &self.state {
            ReadState::Body(decoder) if decoder.ends_at_close() => {
                self.state = ReadState::EndAtClose;
                AtEof::Ended
            }
            ReadState::Idle => {
                self.state = ReadState::Closed;
                AtEof::Idle
            }
            _ => AtEof::Cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one read at a time, taking the events after each, rendered compactly.
    fn read(reader: &mut ResponseReader, pieces: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for piece in pieces {
            reader.read(Bytes::copy_from_slice(piece));
            out.extend(events(reader));
        }
        out
    }

    fn events(reader: &mut ResponseReader) -> Vec<String> {
        std::iter::from_fn(|| reader.poll()).map(render).collect()
    }

    fn render(event: UpEvent) -> String {
        match event {
            UpEvent::Head(head, kind) => format!("head {} {kind:?}", head.status),
            UpEvent::Data(data) => format!("data {}", String::from_utf8_lossy(&data)),
            UpEvent::End => "end".into(),
            UpEvent::Error => "error".into(),
            UpEvent::Refused => "refused".into(),
        }
    }

    fn expecting(method: Method) -> ResponseReader {
        let mut reader = ResponseReader::default();
        reader.expect(method);
        reader
    }

    #[test]
    fn a_head_split_across_reads_then_a_sized_body_in_pieces() {
        let mut reader = expecting(Method::Get);
        assert!(!reader.is_idle());
        let events = read(&mut reader, &[b"HTTP/1.1 200 OK\r\ncont", b"ent-length: 5\r\n\r\nhe", b"llo"]);
        assert_eq!(events, ["head 200 Length(5)", "data he", "data llo", "end"]);
        assert!(reader.is_idle(), "reusable once the body ended");
    }

    #[test]
    fn chunked_bodies_come_out_without_their_framing() {
        let mut reader = expecting(Method::Get);
        let events = read(
            &mut reader,
            &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", b"2\r\nde\r\n0\r\n\r\n"],
        );
        assert_eq!(events, ["head 200 Chunked", "data abc", "data de", "end"]);
        assert!(reader.is_idle());
    }

    #[test]
    fn interim_responses_are_dropped_and_the_final_one_read() {
        let mut reader = expecting(Method::Post);
        let events = read(&mut reader, &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]);
        assert_eq!(events, ["head 204 Empty", "end"]);
    }

    #[test]
    fn a_head_request_gets_no_body_whatever_the_length_says() {
        let mut reader = expecting(Method::Head);
        let events = read(&mut reader, &[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"]);
        assert_eq!(events, ["head 200 Empty", "end"]);
        assert!(reader.is_idle());
    }

    #[test]
    fn a_101_hands_over_what_follows_it_and_every_later_byte() {
        let mut reader = expecting(Method::Get);
        let events = read(
            &mut reader,
            &[b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nfirst", b"more"],
        );
        assert_eq!(events, ["head 101 Tunnel", "data first", "data more"]);
        assert!(!reader.is_idle());
    }

    #[test]
    fn a_2xx_to_a_connect_is_a_pipe_whatever_its_framing_fields_say() {
        let mut reader = ResponseReader::default();
        reader.expect(Method::Connect);
        reader.read(Bytes::from_static(b"HTTP/1.1 202 Accepted\r\ncontent-length: 3\r\n\r\nfirst bytes"));
        assert!(matches!(reader.poll(), Some(UpEvent::Head(head, BodyKind::Tunnel)) if head.status == 202));
        assert_eq!(reader.take_unread(), Bytes::from_static(b"first bytes"));
        let mut refused = ResponseReader::default();
        refused.expect(Method::Connect);
        refused.read(Bytes::from_static(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"));
        assert!(matches!(refused.poll(), Some(UpEvent::Head(_, BodyKind::Empty))));
    }

    #[test]
    fn what_follows_a_101_waits_to_be_taken_by_the_tunnel() {
        let mut reader = expecting(Method::Get);
        reader.read(Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\nfirst"));
        assert!(matches!(reader.poll(), Some(UpEvent::Head(_, BodyKind::Tunnel))));
        assert_eq!(&reader.take_unread()[..], b"first");
        assert!(reader.poll().is_none());
    }

    #[test]
    fn bytes_with_no_request_outstanding_are_an_error_and_the_reader_stays_failed() {
        let mut reader = ResponseReader::default();
        assert_eq!(read(&mut reader, &[b"HTTP/1.1 200 OK\r\n\r\n"]), ["error"]);
        assert_eq!(read(&mut reader, &[b"more"]), ["error"], "failed for good");
        assert!(!reader.is_idle());
    }

    #[test]
    fn a_bad_head_and_bad_framing_are_errors() {
        let mut reader = expecting(Method::Get);
        assert_eq!(read(&mut reader, &[b"HTTP/1.1 2x0 OK\r\n\r\n"]), ["error"]);
        let mut reader = expecting(Method::Get);
        let both = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(read(&mut reader, &[both]), ["error"]);
        let mut reader = expecting(Method::Get);
        let bad_chunk = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(read(&mut reader, &[bad_chunk]), ["head 200 Chunked", "error"]);
    }

    #[test]
    fn a_body_read_until_close_ends_at_eof() {
        let mut reader = expecting(Method::Get);
        assert_eq!(read(&mut reader, &[b"HTTP/1.1 200 OK\r\n\r\nall"]), ["head 200 UntilClose", "data all"]);
        assert_eq!(reader.eof(), AtEof::Ended);
        assert_eq!(events(&mut reader), ["end"]);
        assert_eq!(read(&mut reader, &[b"late"]), ["error"], "nothing may follow a close");
    }

    #[test]
    fn eof_cuts_a_sized_body_or_a_missing_head_short() {
        let mut reader = expecting(Method::Get);
        read(&mut reader, &[b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc"]);
        assert_eq!(reader.eof(), AtEof::Cut, "a sized body cut short");
        assert!(events(&mut reader).is_empty());
        let mut reader = expecting(Method::Get);
        assert_eq!(reader.eof(), AtEof::Cut, "no response at all");
        let mut idle = ResponseReader::default();
        assert_eq!(idle.eof(), AtEof::Idle, "an idle connection may close");
        assert!(events(&mut idle).is_empty());
    }

    #[test]
    fn reads_not_yet_taken_keep_their_order_and_bodies_are_not_copied() {
        let mut reader = expecting(Method::Get);
        reader.read(Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n"));
        assert!(matches!(reader.poll(), Some(UpEvent::Head(_, BodyKind::Length(6)))));
        let body = Bytes::from(b"abc".to_vec());
        let at = body.as_ptr();
        reader.read(body);
        let Some(UpEvent::Data(first)) = reader.poll() else { panic!("a body piece") };
        assert_eq!(first.as_ptr(), at, "handed on as read");
        reader.read(Bytes::from_static(b"de"));
        reader.read(Bytes::from_static(b"f"));
        assert_eq!(events(&mut reader), ["data def", "end"]);
    }

    #[test]
    fn bytes_after_a_response_leave_the_connection_unfit_for_reuse() {
        let mut reader = expecting(Method::Get);
        assert_eq!(read(&mut reader, &[b"HTTP/1.1 204 No Content\r\n\r\n"]), ["head 204 Empty", "end"]);
        reader.read(Bytes::from_static(b"junk"));
        assert!(!reader.is_idle(), "not reusable with unasked-for bytes");
        assert_eq!(events(&mut reader), ["error"]);
    }
}
