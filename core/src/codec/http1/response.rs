//! Reading HTTP/1.1 responses on an upstream connection.

use bytes::{Bytes, BytesMut};
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
                    let _ = self.buf.split_to(consumed);
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
