//! The server side of an HTTP/2 connection: requests in, responses out, per stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Reason, RecvStream};

use super::pipe::Pipe;
use super::stream::{Carries, Io, Sending, StreamIo, Streams};

/// The connection's HTTP/2 settings, from `http2_protocol_options`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_header_list_size: u32,
    /// Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (extended CONNECT).
    pub(crate) extended_connect: bool,
}

/// What the codec has for the connection manager.
#[derive(Debug)]
pub(crate) enum Polled {
    Stream(usize, ServerEvent),
    /// The connection is over: the client went away, a GOAWAY finished, or the client broke
    /// the protocol (h2 has sent the GOAWAY that says so).
    Closed(Option<h2::Error>),
}

#[derive(Debug)]
pub(crate) enum ServerEvent {
    /// A request opens the stream; `end` when its head carried END_STREAM (no body).
    Head(http::request::Parts, bool),
    Data(Bytes),
    /// The request body is complete (trailers are not forwarded).
    End,
    /// The client reset the stream, or h2 did for a protocol error on it.
    Reset(Reason),
    /// Response bytes queued for the stream went to h2 ([`ServerCodec::queued`] is lower),
    /// or its END_STREAM did.
    Sent,
}

enum State {
    Handshaking(Handshake<Pipe, Bytes>),
    Open(Connection<Pipe, Bytes>),
    Done,
}

pub(crate) struct ServerCodec {
    state: State,
    /// The connection's own PINGs (keep-alive), taken from h2 once the connection is up.
    pings: Option<h2::PingPong>,
    pipe: Pipe,
    streams: Streams<Stream>,
}

struct Stream {
    /// The stream's id on the wire (unique on the connection, never reused).
    id: u32,
    io: StreamIo,
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

impl ServerCodec {
    pub(crate) fn new(settings: Settings) -> ServerCodec {
        let pipe = Pipe::default();
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(settings.max_concurrent_streams)
            .initial_window_size(settings.initial_stream_window_size)
            .initial_connection_window_size(settings.initial_connection_window_size)
            .max_header_list_size(settings.max_header_list_size);
        if settings.extended_connect {
            builder.enable_connect_protocol();
        }
        let handshake = builder.handshake(pipe.clone());
        ServerCodec { state: State::Handshaking(handshake), pings: None, pipe, streams: Streams::new() }
    }

    /// Bytes off the connection.
    pub(crate) fn read(&mut self, data: Bytes) {
        self.pipe.feed(data);
    }

    /// The client sent its FIN.
    pub(crate) fn read_closed(&mut self) {
        self.pipe.feed_eof();
    }

    /// How much h2 may write before the socket drains.
    pub(crate) fn set_room(&mut self, room: usize) {
        self.pipe.set_room(room);
    }

    /// What h2 wrote, for the socket.
    pub(crate) fn take_output(&mut self) -> Option<Bytes> {
        self.pipe.take_output()
    }

    /// Nothing read is waiting, and no stream is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.pipe.drained()
    }

    /// The next event. Call until `None` after every input and every call on a stream: h2
    /// writes frames only while polled.
    pub(crate) fn poll(&mut self) -> Option<Polled> {
        loop {
            while let Some(key) = self.streams.next_due() {
                if let Some(event) = self.poll_stream(key) {
                    self.streams.again(key);
                    return Some(Polled::Stream(key, event));
                }
            }
            if let Some(polled) = self.poll_connection() {
                return Some(polled);
            }
            if !self.streams.woken() {
                return None;
            }
        }
    }

    fn poll_connection(&mut self) -> Option<Polled> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match &mut self.state {
                State::Handshaking(handshake) => match Pin::new(handshake).poll(&mut cx) {
                    Poll::Ready(Ok(mut connection)) => {
                        self.pings = connection.ping_pong();
                        self.state = State::Open(connection);
                    }
                    Poll::Ready(Err(error)) => {
                        self.state = State::Done;
                        return Some(Polled::Closed(Some(error)));
                    }
                    Poll::Pending => return None,
                },
                State::Open(connection) => {
                    return match connection.poll_accept(&mut cx) {
                        Poll::Ready(Some(Ok((request, respond)))) => Some(self.accept(request, respond)),
                        Poll::Ready(Some(Err(error))) => {
                            self.state = State::Done;
                            Some(Polled::Closed(Some(error)))
                        }
                        Poll::Ready(None) => {
                            self.state = State::Done;
                            Some(Polled::Closed(None))
                        }
                        Poll::Pending => None,
                    };
                }
                State::Done => return None,
            }
        }
    }

    fn accept(&mut self, request: http::Request<RecvStream>, respond: SendResponse<Bytes>) -> Polled {
        let (parts, recv) = request.into_parts();
        let end = recv.is_end_stream();
        let id = respond.stream_id().as_u32();
        let key =
            self.streams.insert((!end).then_some(recv), Sending::Respond(respond), |io| Stream { id, io });
        Polled::Stream(key, ServerEvent::Head(parts, end))
    }

    fn poll_stream(&mut self, key: usize) -> Option<ServerEvent> {
        let stream = self.streams.get_mut(key)?;
        stream.io.clear();
        let waker = stream.io.waker.clone();
        Some(match stream.io.poll(&mut Context::from_waker(&waker))? {
            Io::Data(data) => ServerEvent::Data(data),
            Io::End => ServerEvent::End,
            Io::Reset(reason) => ServerEvent::Reset(reason),
            Io::Sent => ServerEvent::Sent,
        })
    }

    /// Stops giving the stream's request body window back: the client stops sending on it.
    pub(crate) fn pause(&mut self, key: usize) {
        self.streams.pause(key);
    }

    /// Opens the stream's window again (and reads what waited).
    pub(crate) fn resume(&mut self, key: usize) {
        self.streams.resume(key);
    }

    /// The response head; with `end` it is the whole response.
    pub(crate) fn send_head(&mut self, key: usize, response: http::Response<()>, end: bool) {
        let Some(stream) = self.streams.get_mut(key) else { return };
        let Sending::Respond(respond) = &mut stream.io.send else { return };
        stream.io.send = match respond.send_response(response, end) {
            Ok(body) if !end => Sending::Body(body),
            _ => Sending::Done,
        };
    }

    /// A piece of the response body, sent as the stream's window allows.
    pub(crate) fn send_data(&mut self, key: usize, data: Bytes) {
        self.streams.send_data(key, data);
    }

    /// The response is complete once what is queued has gone.
    pub(crate) fn send_end(&mut self, key: usize) {
        self.streams.send_end(key);
    }

    /// The stream's id on the wire.
    pub(crate) fn stream_id(&self, key: usize) -> u32 {
        self.streams.get(key).map_or(0, |s| s.id)
    }

    /// Response bytes of the stream still waiting for h2's capacity.
    pub(crate) fn queued(&self, key: usize) -> usize {
        self.streams.queued(key)
    }

    /// Resets the stream (RST_STREAM with `reason`); nothing more is sent or read on it.
    pub(crate) fn reset(&mut self, key: usize, reason: Reason) {
        self.streams.reset(key, reason);
    }

    /// The response has gone whole (or the stream was reset).
    pub(crate) fn response_done(&self, key: usize) -> bool {
        self.streams.get(key).is_none_or(|s| s.io.send_done())
    }

    /// The manager is done with the stream. A request body still arriving is cancelled by h2.
    pub(crate) fn remove(&mut self, key: usize) {
        self.streams.remove(key);
    }

    /// Sends a keep-alive PING; false if one is still unanswered (or the connection is not up).
    pub(crate) fn send_ping(&mut self) -> bool {
        self.pings.as_mut().is_some_and(|pings| pings.send_ping(h2::Ping::opaque()).is_ok())
    }

    /// The PING sent was answered.
    pub(crate) fn pong_received(&mut self) -> bool {
        let Some(pings) = self.pings.as_mut() else { return false };
        matches!(pings.poll_pong(&mut Context::from_waker(Waker::noop())), Poll::Ready(Ok(_)))
    }

    /// GOAWAY with an error: the connection ends now.
    pub(crate) fn abrupt_shutdown(&mut self, reason: Reason) {
        if let State::Open(connection) = &mut self.state {
            connection.abrupt_shutdown(reason);
        }
    }

    /// GOAWAY: no new streams; the connection ends when the open ones have.
    pub(crate) fn graceful_shutdown(&mut self) {
        if let State::Open(connection) = &mut self.state {
            connection.graceful_shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use h2::client::{Connection, SendRequest};

    use super::*;

    /// An h2 client and the codec, joined by two pipes; everything is polled by hand.
    struct Rig {
        client: SendRequest<Bytes>,
        connection: Connection<Pipe, Bytes>,
        client_io: Pipe,
        server: ServerCodec,
        events: Vec<(usize, String)>,
    }

    fn settings() -> Settings {
        Settings {
            max_concurrent_streams: 100,
            initial_stream_window_size: 65535,
            initial_connection_window_size: 1 << 20,
            max_header_list_size: 1 << 16,
            extended_connect: false,
        }
    }

    impl Rig {
        fn new() -> Rig {
            let client_io = Pipe::default();
            client_io.set_room(usize::MAX);
            let mut server = ServerCodec::new(settings());
            let mut handshake = Box::pin(h2::client::handshake(client_io.clone()));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..10 {
                if let Poll::Ready(out) = handshake.as_mut().poll(&mut cx) {
                    let (client, connection) = out.unwrap();
                    let mut rig = Rig { client, connection, client_io, server, events: Vec::new() };
                    rig.pump();
                    return rig;
                }
                Self::exchange(&client_io, &mut server, &mut Vec::new());
            }
            panic!("no handshake");
        }

        fn exchange(client_io: &Pipe, server: &mut ServerCodec, events: &mut Vec<(usize, String)>) {
            if let Some(out) = client_io.take_output() {
                server.read(out);
            }
            server.set_room(usize::MAX);
            while let Some(polled) = server.poll() {
                if let Polled::Stream(key, event) = polled {
                    let text = match event {
                        ServerEvent::Head(parts, end) => format!("head {} end={end}", parts.uri.path()),
                        ServerEvent::Data(data) => format!("data {}", String::from_utf8_lossy(&data)),
                        ServerEvent::End => "end".to_string(),
                        ServerEvent::Reset(reason) => format!("reset {reason:?}"),
                        ServerEvent::Sent => "sent".to_string(),
                    };
                    events.push((key, text));
                }
            }
            if let Some(out) = server.take_output() {
                client_io.feed(out);
            }
        }

        fn pump(&mut self) {
            for _ in 0..4 {
                let _ = Pin::new(&mut self.connection).poll(&mut Context::from_waker(Waker::noop()));
                Self::exchange(&self.client_io, &mut self.server, &mut self.events);
            }
        }

        fn request(&mut self, path: &str, end: bool) -> h2::SendStream<Bytes> {
            let request = http::Request::builder().uri(format!("http://h{path}")).body(()).unwrap();
            let (_, send) = self.client.send_request(request, end).unwrap();
            self.pump();
            send
        }
    }

    #[test]
    fn a_request_its_body_and_a_reset_after_it_was_taken_are_events() {
        let mut rig = Rig::new();
        let mut send = rig.request("/a", false);
        send.send_data(Bytes::from_static(b"xy"), false).unwrap();
        rig.pump();
        send.send_reset(Reason::CANCEL);
        rig.pump();
        assert_eq!(
            rig.events,
            [
                (0, "head /a end=false".to_string()),
                (0, "data xy".to_string()),
                (0, "reset CANCEL".to_string())
            ]
        );
    }

    #[test]
    fn a_reset_of_a_bodiless_request_waiting_for_its_answer_is_an_event() {
        let mut rig = Rig::new();
        let mut send = rig.request("/b", true);
        send.send_reset(Reason::CANCEL);
        rig.pump();
        assert_eq!(rig.events, [(0, "head /b end=true".to_string()), (0, "reset CANCEL".to_string())]);
    }

    /// Window the client gives back in the same read as its next body bytes: the bytes come
    /// out first, and the room taken must still be reported after them (it once was lost,
    /// and a tunnel paused on it stalled for good).
    #[test]
    fn room_freed_in_the_read_that_brings_body_bytes_is_still_reported() {
        let mut rig = Rig::new();
        let request = http::Request::builder().uri("http://h/t").body(()).unwrap();
        let (mut response, mut send) = rig.client.send_request(request, false).unwrap();
        rig.pump();
        rig.server.send_head(0, http::Response::new(()), false);
        rig.server.send_data(0, Bytes::from(vec![7u8; 100_000]));
        rig.pump();
        assert!(rig.server.queued(0) > 0, "more than the client's window is queued");
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(response)) = Pin::new(&mut response).poll(&mut cx) else { panic!("no response") };
        let mut body = response.into_body();
        let mut taken = 0;
        while let Poll::Ready(Some(Ok(data))) = body.poll_data(&mut cx) {
            taken += data.len();
        }
        body.flow_control().release_capacity(taken).unwrap();
        send.send_data(Bytes::from_static(b"xy"), false).unwrap();
        rig.events.clear();
        rig.pump();
        assert_eq!(rig.server.queued(0), 0);
        assert_eq!(rig.events, [(0, "data xy".to_string()), (0, "sent".to_string())]);
    }

    proptest::proptest! {
        /// However the client's bytes are split into reads, the codec makes the same events
        /// of them.
        #[test]
        fn events_do_not_depend_on_read_splits(cuts in proptest::collection::vec(1usize..64, 1..40)) {
            let mut rig = Rig::new();
            let request = http::Request::builder().uri("http://h/split").body(()).unwrap();
            let (_, mut send) = rig.client.send_request(request, false).unwrap();
            send.send_data(Bytes::from_static(b"hello, world"), true).unwrap();
            let _ = Pin::new(&mut rig.connection).poll(&mut Context::from_waker(Waker::noop()));
            let bytes = rig.client_io.take_output().expect("the client wrote its request");
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at == bytes.len() {
                    break;
                }
                let end = (at + cut).min(bytes.len());
                rig.server.read(bytes.slice(at..end));
                at = end;
                Rig::exchange(&rig.client_io, &mut rig.server, &mut rig.events);
            }
            let body: String = rig.events.iter().filter_map(|(_, e)| e.strip_prefix("data ")).collect();
            proptest::prop_assert_eq!(&rig.events[0].1, "head /split end=false");
            proptest::prop_assert_eq!(body, "hello, world");
            proptest::prop_assert_eq!(&rig.events.last().unwrap().1, "end");
        }
    }
}
