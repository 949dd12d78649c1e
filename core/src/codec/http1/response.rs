//! Reading HTTP/1.1 responses on an upstream connection.

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

use crate::codec::http1::{self, BodyDecoder, BodyKind, Decoded, Method, ResponseHead};

/// What a response read produced, in order.
#[derive(Debug)]
pub(crate) enum UpEvent {
    /// A final response head (1xx interim responses other than 101 are dropped).
    Head(Box<ResponseHead>, BodyKind),
    /// A piece of the response body (never framing bytes).
    Data(Bytes),
    /// The response is complete.
    End,
    /// A `101`: from here on the connection is a raw pipe; these bytes came after the head.
    Upgraded(Bytes),
    /// The upstream broke the protocol (or sent bytes when no request was outstanding).
    Error,
}

pub(crate) type UpEvents = SmallVec<[UpEvent; 4]>;

/// The response side of one upstream HTTP/1.1 connection.
#[derive(Default)]
pub(crate) struct ResponseReader {
    /// Bytes of a response head not yet complete.
    buf: BytesMut,
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

    /// No response is outstanding (reusable between requests).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, ReadState::Idle) && self.buf.is_empty()
    }

    pub(crate) fn read(&mut self, data: Bytes, out: &mut UpEvents) {
        let mut input = data;
        loop {
            match &mut self.state {
                ReadState::Idle | ReadState::Closed | ReadState::Failed => {
                    if !input.is_empty() {
                        self.state = ReadState::Failed;
                        out.push(UpEvent::Error);
                    }
                    return;
                }
                ReadState::Upgraded => {
                    if !input.is_empty() {
                        out.push(UpEvent::Data(input));
                    }
                    return;
                }
                ReadState::Head(method) => {
                    if input.is_empty() {
                        return;
                    }
                    let method = method.clone();
                    // Heads are copied into one buffer; bodies never are.
                    self.buf.extend_from_slice(&input);
                    let (head, consumed) = match http1::parse_response_head(&self.buf) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => return,
                        Err(_) => {
                            self.state = ReadState::Failed;
                            out.push(UpEvent::Error);
                            return;
                        }
                    };
                    self.buf.advance(consumed);
                    input = self.buf.split().freeze();
                    if head.status == 101 {
                        self.state = ReadState::Upgraded;
                        out.push(UpEvent::Head(Box::new(head), BodyKind::Tunnel));
                        out.push(UpEvent::Upgraded(input));
                        return;
                    }
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    let kind = match http1::response_body(&method, &head) {
                        Ok(kind) => kind,
                        Err(_) => {
                            self.state = ReadState::Failed;
                            out.push(UpEvent::Error);
                            return;
                        }
                    };
                    self.state = ReadState::Body(BodyDecoder::new(kind));
                    out.push(UpEvent::Head(Box::new(head), kind));
                }
                ReadState::Body(decoder) => match decoder.decode(&mut input) {
                    Ok(Decoded::Data(data)) => out.push(UpEvent::Data(data)),
                    Ok(Decoded::NeedMore) => return,
                    Ok(Decoded::End) => {
                        self.state = ReadState::Idle;
                        out.push(UpEvent::End);
                    }
                    Err(_) => {
                        self.state = ReadState::Failed;
                        out.push(UpEvent::Error);
                        return;
                    }
                },
            }
        }
    }

    /// The upstream closed its side: that ends a read-until-close body; anything else
    /// outstanding is cut short.
    pub(crate) fn eof(&mut self, out: &mut UpEvents) -> bool {
        match &self.state {
            ReadState::Body(decoder) if decoder.ends_at_close() => {
                self.state = ReadState::Closed;
                out.push(UpEvent::End);
                true
            }
            ReadState::Idle => {
                self.state = ReadState::Closed;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one read at a time and renders the events compactly.
    fn read(reader: &mut ResponseReader, pieces: &[&[u8]]) -> Vec<String> {
        let mut out = UpEvents::new();
        for piece in pieces {
            reader.read(Bytes::copy_from_slice(piece), &mut out);
        }
        out.into_iter().map(render).collect()
    }

    fn render(event: UpEvent) -> String {
        match event {
            UpEvent::Head(head, kind) => format!("head {} {kind:?}", head.status),
            UpEvent::Data(data) => format!("data {}", String::from_utf8_lossy(&data)),
            UpEvent::End => "end".into(),
            UpEvent::Upgraded(rest) => format!("upgraded {}", String::from_utf8_lossy(&rest)),
            UpEvent::Error => "error".into(),
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
        assert_eq!(events, ["head 101 Tunnel", "upgraded first", "data more"]);
        assert!(!reader.is_idle());
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
        let mut out = UpEvents::new();
        assert!(reader.eof(&mut out));
        assert_eq!(out.into_iter().map(render).collect::<Vec<_>>(), ["end"]);
        assert_eq!(read(&mut reader, &[b"late"]), ["error"], "nothing may follow a close");
    }

    #[test]
    fn eof_cuts_a_sized_body_or_a_missing_head_short() {
        let mut reader = expecting(Method::Get);
        read(&mut reader, &[b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc"]);
        let mut out = UpEvents::new();
        assert!(!reader.eof(&mut out), "a sized body cut short");
        assert!(out.is_empty());
        let mut reader = expecting(Method::Get);
        assert!(!reader.eof(&mut out), "no response at all");
        let mut idle = ResponseReader::default();
        assert!(idle.eof(&mut out), "an idle connection may close");
        assert!(out.is_empty());
    }
}
