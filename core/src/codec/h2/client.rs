//! The client side of an HTTP/2 connection (a pooled upstream connection): requests out,
//! responses in, per stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::Reason;

use super::pipe::Pipe;
use super::stream::{Carries, Io, Sending, StreamIo, Streams};

/// The windows the proxy offers an upstream for its responses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientSettings {
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
}

#[derive(Debug)]
pub(crate) enum ClientEvent {
    /// The response head; `end` when it carried END_STREAM (no body).
    Response(http::response::Parts, bool),
    Data(Bytes),
    /// The response is complete (trailers are not forwarded).
    End,
    /// The stream was reset. `unprocessed`: the peer refused it (REFUSED_STREAM) or a GOAWAY
    /// said it was never looked at, so it may be sent again elsewhere.
    Reset {
        reason: Reason,
        unprocessed: bool,
    },
    /// Request bytes queued for the stream went to h2.
    Sent,
}

#[derive(Debug)]
pub(crate) enum ClientPolled {
    Stream(usize, ClientEvent),
    /// The connection is over (closed, or broken: h2 has written its GOAWAY).
    Closed(Option<h2::Error>),
}

type Handshake =
    Pin<Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<Pipe, Bytes>), h2::Error>> + Send>>;

enum State {
    Handshaking(Handshake),
    Open { send: SendRequest<Bytes>, connection: Box<Connection<Pipe, Bytes>> },
    Done,
}

struct Stream {
    io: StreamIo,
    /// Until the response head came.
    response: Option<ResponseFuture>,
}

impl Carries for Stream {
    fn io(&self) -> &StreamIo {
        &self.io
    }

    fn io_mut(&mut self) -> &mut StreamIo {
        &mut self.io
    }

    fn into_io(self) -> StreamIo {
        self.io
    }
}

pub(crate) struct ClientCodec {
    state: State,
    pipe: Pipe,
    streams: Streams<Stream>,
    /// The peer's first bytes (its SETTINGS, RFC 9113 §3.4) were read: its stream limit is
    /// known.
    heard: bool,
    /// The connection ended; reported once every stream has given what h2 still holds for
    /// it (a GOAWAY's last responses come in the same read as the close).
    ended: Option<Option<h2::Error>>,
}

impl ClientCodec {
    pub(crate) fn new(settings: ClientSettings) -> ClientCodec {
        let pipe = Pipe::default();
        let handshake = h2::client::Builder::new()
            .initial_window_size(settings.initial_stream_window_size)
            .initial_connection_window_size(settings.initial_connection_window_size)
            .handshake::<Pipe, Bytes>(pipe.clone());
        ClientCodec {
            state: State::Handshaking(Box::pin(handshake)),
            pipe,
            streams: Streams::new(),
            heard: false,
            ended: None,
        }
    }

    pub(crate) fn read(&mut self, data: Bytes) {
        self.heard = true;
        self.pipe.feed(data);
    }

    pub(crate) fn read_closed(&mut self) {
        self.pipe.feed_eof();
    }

    pub(crate) fn set_room(&mut self, room: usize) {
        self.pipe.set_room(room);
    }

    pub(crate) fn take_output(&mut self) -> Option<Bytes> {
        self.pipe.take_output()
    }

    /// How many streams the peer allows at once (known once it was [heard](Self::can_open)).
    pub(crate) fn peer_limit(&self) -> usize {
        match &self.state {
            State::Open { connection, .. } => connection.max_concurrent_send_streams(),
            _ => 0,
        }
    }

    /// A new stream may be opened now: the connection is up, the peer's SETTINGS were read
    /// (so its limit is not guessed), and it has not said GOAWAY.
    pub(crate) fn can_open(&mut self) -> bool {
        let State::Open { send, .. } = &mut self.state else { return false };
        self.heard && matches!(send.poll_ready(&mut Context::from_waker(Waker::noop())), Poll::Ready(Ok(())))
    }

    /// The peer said GOAWAY, or the connection broke: no new stream will be taken.
    pub(crate) fn going_away(&mut self) -> bool {
        match &mut self.state {
            State::Open { send, .. } => {
                matches!(send.poll_ready(&mut Context::from_waker(Waker::noop())), Poll::Ready(Err(_)))
            }
            State::Handshaking(_) => false,
            State::Done => true,
        }
    }

    /// Opens a stream with this request head; with `end` the request is whole. An extended
    /// CONNECT is sent only to a peer that allows it (SETTINGS_ENABLE_CONNECT_PROTOCOL).
    pub(crate) fn send_request(&mut self, request: http::Request<()>, end: bool) -> Option<usize> {
        let State::Open { send, .. } = &mut self.state else { return None };
        let extended = request.extensions().get::<h2::ext::Protocol>().is_some();
        if extended && !send.is_extended_connect_protocol_enabled() {
            tracing::debug!("the upstream does not allow extended CONNECT");
            return None;
        }
        let (response, body) = send.send_request(request, end).ok()?;
        let sending = if end { Sending::Done } else { Sending::Body(body) };
        Some(self.streams.insert(None, sending, |io| Stream { io, response: Some(response) }))
    }

    pub(crate) fn send_data(&mut self, key: usize, data: Bytes) {
        self.streams.send_data(key, data);
    }

    pub(crate) fn send_end(&mut self, key: usize) {
        self.streams.send_end(key);
    }

    /// Request bytes of the stream still waiting for h2's capacity.
    pub(crate) fn queued(&self, key: usize) -> usize {
        self.streams.queued(key)
    }

    /// Stops giving the response's window back (the client is backed up).
    pub(crate) fn pause(&mut self, key: usize) {
        self.streams.pause(key);
    }

    pub(crate) fn resume(&mut self, key: usize) {
        self.streams.resume(key);
    }

    /// RST_STREAM(CANCEL) and forget the stream.
    pub(crate) fn cancel(&mut self, key: usize) {
        self.streams.reset(key, Reason::CANCEL);
        self.streams.remove(key);
    }

    /// The stream is done (its response ended); it is forgotten.
    pub(crate) fn remove(&mut self, key: usize) {
        self.streams.remove(key);
    }

    /// The next event. Call until `None` after every input and every call on a stream.
    pub(crate) fn poll(&mut self) -> Option<ClientPolled> {
        loop {
            while let Some(key) = self.streams.next_due() {
                if let Some(event) = self.poll_stream(key) {
                    self.streams.again(key);
                    return Some(ClientPolled::Stream(key, event));
                }
            }
            if let Some(polled) = self.poll_connection() {
                match polled {
                    ClientPolled::Closed(error) => {
                        self.ended = Some(error);
                        self.streams.all_due();
                        continue;
                    }
                    polled => return Some(polled),
                }
            }
            if !self.streams.woken() {
                return self.ended.take().map(ClientPolled::Closed);
            }
        }
    }

    fn poll_connection(&mut self) -> Option<ClientPolled> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match &mut self.state {
                State::Handshaking(handshake) => match handshake.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok((send, connection))) => {
                        self.state = State::Open { send, connection: Box::new(connection) };
                    }
                    Poll::Ready(Err(error)) => {
                        self.state = State::Done;
                        return Some(ClientPolled::Closed(Some(error)));
                    }
                    Poll::Pending => return None,
                },
                State::Open { connection, .. } => {
                    return match Pin::new(&mut **connection).poll(&mut cx) {
                        Poll::Ready(result) => {
                            self.state = State::Done;
                            Some(ClientPolled::Closed(result.err()))
                        }
                        Poll::Pending => None,
                    };
                }
                State::Done => return None,
            }
        }
    }

    fn poll_stream(&mut self, key: usize) -> Option<ClientEvent> {
        let stream = self.streams.get_mut(key)?;
        stream.io.clear();
        let waker = stream.io.waker.clone();
        let mut cx = Context::from_waker(&waker);
        if let Some(response) = &mut stream.response {
            match Pin::new(response).poll(&mut cx) {
                Poll::Ready(Ok(response)) => {
                    stream.response = None;
                    let (parts, body) = response.into_parts();
                    let end = body.is_end_stream();
                    stream.io.recv = (!end).then_some(body);
                    return Some(ClientEvent::Response(parts, end));
                }
                Poll::Ready(Err(error)) => {
                    stream.response = None;
                    stream.io.reset(Reason::CANCEL);
                    let reason = error.reason().unwrap_or(Reason::CANCEL);
                    // A GOAWAY that left this stream out, or a refusal: the peer did nothing
                    // with it (RFC 9113 §6.8, §8.7).
                    let unprocessed =
                        reason == Reason::REFUSED_STREAM || error.is_go_away() && error.is_remote();
                    return Some(ClientEvent::Reset { reason, unprocessed });
                }
                Poll::Pending => {}
            }
        }
        Some(match stream.io.poll(&mut cx)? {
            Io::Data(data) => ClientEvent::Data(data),
            Io::End => ClientEvent::End,
            Io::Reset(reason) => ClientEvent::Reset {
                reason,
                unprocessed: reason == Reason::REFUSED_STREAM && stream.response.is_some(),
            },
            Io::Sent => ClientEvent::Sent,
        })
    }
}
