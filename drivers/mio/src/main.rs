//! burrow on mio: one thread per worker, each with its own `Poll`, core and read buffer.
//!
//! Everything between the core and the sockets lives in [`burrow_driver::Engine`]; this file
//! is the socket primitives on mio (edge-triggered epoll) and the loop that waits.

use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::task::Poll as TaskPoll;
use std::time::Instant;

use burrow_core::{Input, QueryId};
use burrow_driver::dns::Resolver;
use burrow_driver::{net, Engine, Net, Worker};
use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

/// Wakes the loop for a stop signal or a DNS answer.
const WAKE: Token = Token(usize::MAX);

fn main() -> ExitCode {
    burrow_driver::main(worker)
}

fn worker(worker: Worker) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| format!("cannot create a waker: {e}"))?);
    let stop_waker = waker.clone();
    worker.stop.on_stop(move || drop(stop_waker.wake()));
    let (answer, answers) = mpsc::channel();
    let resolver = Resolver::new(move |query, addrs| {
        let _ = answer.send(Input::Resolved { query, addrs });
        let _ = waker.wake();
    });
    let registry = poll.registry().try_clone().map_err(|e| format!("cannot clone the registry: {e}"))?;
    let mut engine = Engine::new(MioNet { registry, resolver }, &worker);
    let mut events = Events::with_capacity(1024);
    loop {
        engine.drive(Instant::now());
        if engine.is_finished() {
            return engine.result();
        }
        match poll.poll(&mut events, engine.timeout()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        let now = Instant::now();
        for event in events.iter().filter(|event| event.token() != WAKE) {
            // Edge-triggered: the flags are the socket's state when the event was taken, and
            // whatever arrives later is a new event. A FIN or an error is only reported once,
            // so the engine is told to read to the end rather than stop at a short read.
            let read_closed = event.is_read_closed() || event.is_error();
            let readable = event.is_readable() || read_closed;
            let writable = event.is_writable() || event.is_write_closed() || event.is_error();
            engine.ready(now, event.token().0, readable, writable, read_closed);
        }
        for input in answers.try_iter() {
            engine.handle(now, input);
        }
    }
}

struct MioNet {
    registry: Registry,
    resolver: Resolver,
}

impl Net for MioNet {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn listen(&mut self, token: usize, addr: SocketAddr) -> io::Result<TcpListener> {
        let mut listener = TcpListener::from_std(net::listen(addr)?);
        self.registry.register(&mut listener, Token(token), Interest::READABLE)?;
        Ok(listener)
    }

    fn unlisten(&mut self, listener: TcpListener) {
        // Closing the (only) descriptor takes it out of the epoll set.
        drop(listener);
    }

    fn accept(&mut self, _: usize, listener: &mut TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept()
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream::from_std(net::connect(addr)?))
    }

    fn register(&mut self, token: usize, stream: &mut TcpStream) -> io::Result<()> {
        self.registry.register(stream, Token(token), Interest::READABLE | Interest::WRITABLE)
    }

    fn poll_connect(&mut self, _: usize, stream: &TcpStream, writable: bool) -> TaskPoll<io::Result<()>> {
        // The engine never reuses a token within one batch of events, so `writable` is this
        // socket's own: a connecting socket becomes writable when the handshake ends.
        if writable {
            TaskPoll::Ready(net::connect_result(stream))
        } else {
            TaskPoll::Pending
        }
    }

    fn read(&mut self, _: usize, stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        net::recv(stream, buf)
    }

    fn more_to_read(&mut self, _: usize, _: &mut TcpStream) -> bool {
        // Bytes that arrive after a read are a new edge; a FIN or an error that came with the
        // bytes is passed to `Engine::ready` as `read_closed`.
        false
    }

    fn write(&mut self, _: usize, stream: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        stream.write_vectored(bufs)
    }

    fn set_reading(&mut self, token: usize, stream: &mut TcpStream, reading: bool) {
        // Writable interest stays: it reports connect completion, room to write and errors.
        let interest = if reading { Interest::READABLE | Interest::WRITABLE } else { Interest::WRITABLE };
        if let Err(e) = self.registry.reregister(stream, Token(token), interest) {
            tracing::debug!(token, "reregister failed: {e}");
        }
    }

    fn close(&mut self, stream: TcpStream) {
        // No `EPOLL_CTL_DEL`: closing the descriptor (the only one: none is duplicated, and
        // the process never forks) takes it out of the epoll set, and an event for it that is
        // already in this batch finds its slot empty (the engine frees slots only between
        // batches).
        drop(stream);
    }

    fn resolve(&mut self, query: QueryId, host: String) {
        self.resolver.resolve(query, host);
    }
}
