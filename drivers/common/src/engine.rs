//! The connection table both drivers share: it executes the core's outputs on sockets and
//! turns socket results into the core's inputs.
//!
//! A driver supplies only the socket primitives ([`Net`]: bind, accept, connect, nonblocking
//! read and write, interest changes) and its wait (mio's `poll`, tokio's reactor). Everything
//! between the core and the sockets (write queues and `Flushed` accounting, half-close,
//! close, abort, pause/resume, read fairness, the one read buffer) is written once
//! here, so both drivers feed the core exactly the same inputs for the same socket events.
//!
//! A driver's loop:
//!
//! ```text
//! loop {
//!     engine.drive(Instant::now());          // stop flag, timers, pending reads, flushes
//!     if engine.is_finished() { break }
//!     wait for readiness or engine.deadline();
//!     for each ready token: engine.ready(now, token, readable, writable, read_closed);
//!     for each DNS answer: engine.handle(now, Input::Resolved { .. });
//! }
//! ```
//!
//! Inputs are derived only from what read, write, accept and connect calls return, never from
//! readiness flags, so a spurious or missing-but-retried readiness never changes what the core
//! sees. A readiness report may be spurious; it only makes the engine try. Two exceptions,
//! both about when to try, not what to feed:
//!
//! - A read that returns less than the room it was offered drained the socket's receive queue,
//!   so the engine stops there instead of making a second read that would only say `WouldBlock`
//!   (as tokio's own `AsyncRead` does). That relies on the driver reporting the token again
//!   when more arrives (an edge-triggered registration does: new bytes are a new edge) and on
//!   knowing whether a FIN or an error came with the bytes: `Engine::ready`'s `read_closed`
//!   (mio) or [`Net::more_to_read`] (a readiness cache, tokio). Then it reads on to the end.
//! - A connecting socket is only asked whether its connect finished (`SO_ERROR`) once it was
//!   reported writable. A slot (token) is therefore never reused within the batch of reports
//!   that saw its connection closed: a report still queued for the old socket must not be
//!   taken for the new one's.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::{CloseKind, CloseReason, ConnId, Input, ListenerId, Output, Proxy, QueryId};
use bytes::{Buf, Bytes, BytesMut};
use slab::Slab;

use crate::access_log::Logs;
use crate::net;
use crate::run::{Stop, Worker};

/// Tokens at or above this bit name listeners; below it, connections.
pub const LISTENER_BIT: usize = 1 << (usize::BITS - 2);
/// The read buffer grows in blocks of this size; every `Input::Data` is a slice of one block.
pub const READ_BLOCK: usize = 64 * 1024;
/// A read gets at least this much room: below it, a fresh block is reserved.
const MIN_READ_ROOM: usize = 16 * 1024;
/// At most this much is read from one connection per wake-up before the others get a turn,
/// when others have bytes coming in: the last wait's reports had a connection read something
/// (see [`READ_BUDGET_ALONE`]).
pub const READ_BUDGET: usize = 256 * 1024;
/// The same when the last wait's reports had nothing to read: the connections reading on
/// from the last turn (bulk transfers) have the worker to themselves, so their turns are
/// longer. Every turn costs a wait (`epoll_wait`) and a write to the peer: at 256 KiB, one
/// wait and one `writev` per four 64 KiB reads. This is Envoy's default per-connection buffer
/// limit, where Envoy stops reading a socket for one event too (and past which the core
/// pauses the reading side of a tunnel anyway).
pub const READ_BUDGET_ALONE: usize = 1024 * 1024;
/// At most this many queued chunks go into one vectored write.
pub const MAX_IOV: usize = 64;

/// The socket primitives of one driver. Every method is nonblocking; `WouldBlock` means "the
/// driver will report this token ready again when it may have changed" (for readiness-based
/// drivers this is where interest is registered).
pub trait Net {
    type Listener: AsFd;
    type Stream: AsFd;

    /// Bind and listen on `addr` (see [`net::listen`]) and watch the listener under `token`.
    fn listen(&mut self, token: usize, addr: SocketAddr) -> io::Result<Self::Listener>;
    fn unlisten(&mut self, listener: Self::Listener);
    /// One accepted connection and its peer address, or `WouldBlock`.
    fn accept(
        &mut self,
        token: usize,
        listener: &mut Self::Listener,
    ) -> io::Result<(Self::Stream, SocketAddr)>;
    /// Start a nonblocking connect (see [`net::connect`]).
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Self::Stream>;
    /// Watch a new stream (accepted or connecting) for reading and writing under `token`, and
    /// have the token reported once it is (or may be) readable or writable: the engine does
    /// not read a new connection before that report.
    fn register(&mut self, token: usize, stream: &mut Self::Stream) -> io::Result<()>;
    /// Whether the connect finished: `Pending` (the token will be reported again), connected,
    /// or failed. `writable` is the report's flag (see [`Engine::ready`]); a driver that
    /// tracks readiness itself may ignore it. A connect has finished once the socket is
    /// writable (see [`net::connect_result`]).
    fn poll_connect(&mut self, token: usize, stream: &Self::Stream, writable: bool) -> Poll<io::Result<()>>;
    /// Read into the spare capacity of `buf` (appending; no zeroing needed).
    fn read(&mut self, token: usize, stream: &mut Self::Stream, buf: &mut BytesMut) -> io::Result<usize>;
    /// Asked after a read that returned less than the room it was offered (the receive queue
    /// was empty): `true` if the socket is known to have more for a read right now (a FIN or
    /// an error that came with the bytes), `false` if the token will be reported readable
    /// again when more arrives. An edge-triggered driver answers `false` (it passes FINs and
    /// errors to [`Engine::ready`]); a driver with a readiness cache clears it on such a read
    /// and answers from what is left, registering its interest if nothing is.
    fn more_to_read(&mut self, token: usize, stream: &mut Self::Stream) -> bool;
    fn write(&mut self, token: usize, stream: &mut Self::Stream, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Reading paused (`false`) or resumed (`true`); after a resume the engine reads at once.
    fn set_reading(&mut self, token: usize, stream: &mut Self::Stream, reading: bool);
    /// Stop watching and close.
    fn close(&mut self, stream: Self::Stream);
    /// Resolve `host` off the loop to every address of both families, in the resolver's
    /// order (the core applies the cluster's `dns_lookup_family`); the answer comes back as
    /// [`Engine::handle`] with `Input::Resolved`.
    fn resolve(&mut self, query: QueryId, host: String);
}

/// One socket the core knows about (or knew: see `id`).
struct Conn<S> {
    /// `None` once the core released the id: the slot waits for the next `drive` to be freed.
    id: Option<ConnId>,
    /// `None` once the socket is gone (failed, reset): the core will still send `Close`.
    stream: Option<S>,
    queue: VecDeque<Bytes>,
    connecting: bool,
    paused: bool,
    read_closed: bool,
    /// The core asked for a FIN after the queue.
    shutdown: bool,
    /// The FIN was sent.
    shut: bool,
    /// In the engine's `dirty` list.
    dirty: bool,
    /// In the engine's `ready` list (its next read is due at the next `drive`).
    queued_read: bool,
    /// The driver reported the read side closed or in error: reads go on until they return 0
    /// or fail, not only until a read comes back short.
    read_to_end: bool,
}

impl<S> Conn<S> {
    fn new(id: ConnId, stream: Option<S>, connecting: bool) -> Conn<S> {
        Conn {
            id: Some(id),
            stream,
            queue: VecDeque::new(),
            connecting,
            paused: false,
            read_closed: false,
            shutdown: false,
            shut: false,
            dirty: false,
            queued_read: false,
            read_to_end: false,
        }
    }

    /// What a closed connection's slot holds until its token may be reused.
    fn released() -> Conn<S> {
        Conn {
            id: None,
            stream: None,
            queue: VecDeque::new(),
            connecting: false,
            paused: false,
            read_closed: false,
            shutdown: false,
            shut: false,
            dirty: false,
            queued_read: false,
            read_to_end: false,
        }
    }
}

/// One worker's core plus its sockets.
pub struct Engine<N: Net> {
    proxy: Proxy,
    net: N,
    conns: Slab<Conn<N::Stream>>,
    /// `ConnId.0` -> token.
    tokens: Vec<Option<usize>>,
    /// Each listener with its local address if that is what every connection it accepts has
    /// as its own (a listener bound to one address, not a wildcard).
    listeners: Slab<(ListenerId, N::Listener, Option<SocketAddr>)>,
    /// The worker's one read buffer.
    buf: BytesMut,
    /// Connections to read without waiting for readiness: read budget spent, or resumed.
    ready: Vec<usize>,
    /// The read budget of this turn: [`READ_BUDGET`] or [`READ_BUDGET_ALONE`].
    budget: usize,
    /// A readiness report since the last `drive` had a connection read something.
    contended: bool,
    ready_spare: Vec<usize>,
    /// Connections with bytes to write or a FIN to send.
    dirty: VecDeque<usize>,
    /// Slots of closed connections, freed at the next `drive`: until then a readiness report
    /// still queued for the old socket finds the slot empty instead of a new connection.
    released: Vec<usize>,
    /// Inputs found while executing outputs, fed once the output queue is empty.
    deferred: VecDeque<Input>,
    stop: Stop,
    drain: Duration,
    /// Where access log lines go.
    logs: Logs,
    stopping: bool,
    listen_failed: bool,
    now: Instant,
}

impl<N: Net> Engine<N> {
    pub fn new(net: N, worker: &Worker) -> Engine<N> {
        let now = Instant::now();
        Engine {
            proxy: Proxy::new(worker.config.clone(), worker.shared.clone(), now, SystemTime::now(), seed()),
            net,
            conns: Slab::with_capacity(256),
            tokens: Vec::new(),
            listeners: Slab::new(),
            buf: BytesMut::new(),
            ready: Vec::new(),
            budget: READ_BUDGET,
            contended: false,
            ready_spare: Vec::new(),
            dirty: VecDeque::new(),
            released: Vec::new(),
            deferred: VecDeque::new(),
            stop: worker.stop.clone(),
            logs: worker.logs.clone(),
            drain: worker.drain,
            stopping: false,
            listen_failed: false,
            now,
        }
    }

    /// The driver's own state (its poll registry, resolver, ...).
    pub fn net(&mut self) -> &mut N {
        &mut self.net
    }

    /// Everything due without waiting: the stop flag, the core's timers, reads left over from
    /// the last wake-up, and writes. Call before every wait.
    pub fn drive(&mut self, now: Instant) {
        self.now = now;
        // The readiness reports of the last wait are all handled.
        for token in self.released.drain(..) {
            self.conns.remove(token);
        }
        self.execute(now); // what the core queued on its own (at start: the listeners)
        if !self.stopping && self.stop.is_stopped() {
            self.stopping = true;
            self.proxy.shutdown(now, self.drain);
            self.execute(now);
        }
        if self.proxy.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.proxy.handle_timeout(now);
            self.execute(now);
        }
        self.budget = if mem::take(&mut self.contended) { READ_BUDGET } else { READ_BUDGET_ALONE };
        let mut ready = mem::replace(&mut self.ready, mem::take(&mut self.ready_spare));
        for token in ready.drain(..) {
            match self.conns.get_mut(token) {
                Some(conn) if conn.queued_read => conn.queued_read = false,
                _ => continue, // closed since (the slot may have been reused)
            }
            self.read(now, token, false);
        }
        self.ready_spare = ready;
        while let Some(token) = self.dirty.pop_front() {
            self.flush(now, token);
        }
    }

    /// When to wake up even if no socket is ready (`now` if there is work left already).
    pub fn deadline(&self) -> Option<Instant> {
        if self.has_work() {
            return Some(self.now);
        }
        self.proxy.poll_timeout()
    }

    /// [`Engine::deadline`] as a timeout from now, for `poll`-style waits.
    pub fn timeout(&self) -> Option<Duration> {
        self.deadline().map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Reads left over that [`Engine::drive`] will do without waiting for readiness.
    pub fn has_work(&self) -> bool {
        !self.ready.is_empty() || !self.dirty.is_empty()
    }

    /// The core is finished: it closed every connection once its bytes were flushed (or
    /// its flush deadline passed), so nothing is left to write.
    pub fn is_finished(&self) -> bool {
        self.proxy.is_finished()
    }

    /// How the worker ends: an error if a listener could not be bound.
    pub fn result(&self) -> Result<(), String> {
        if self.listen_failed {
            Err("a listener could not be bound".to_string())
        } else {
            Ok(())
        }
    }

    /// Feed one input (e.g. a DNS answer) and execute what follows.
    pub fn handle(&mut self, now: Instant, input: Input) {
        trace_input(&input);
        self.proxy.handle(now, input);
        self.execute(now);
    }

    /// The socket under `token` may be readable and/or writable. `read_closed`: the report
    /// says the read side is closed or in error (a FIN or an error arrived, maybe with bytes);
    /// reads then go on until they return 0 or fail. A driver with a readiness cache passes
    /// `false` and answers [`Net::more_to_read`] instead.
    pub fn ready(&mut self, now: Instant, token: usize, readable: bool, writable: bool, read_closed: bool) {
        if token & LISTENER_BIT != 0 {
            return self.accept(now, token & !LISTENER_BIT);
        }
        let Some(conn) = self.conns.get_mut(token) else { return };
        let Some(stream) = conn.stream.as_ref() else { return };
        if read_closed {
            conn.read_to_end = true;
        }
        if conn.connecting {
            match self.net.poll_connect(token, stream, writable) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    conn.connecting = false;
                    let id = conn.id;
                    self.mark_dirty(token);
                    if let Some(id) = id {
                        self.handle(now, Input::Connected { conn: id });
                    }
                    if readable {
                        self.read(now, token, true);
                    }
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(token, "connect failed: {e}");
                    if let Some(stream) = conn.stream.take() {
                        self.net.close(stream);
                    }
                    if let Some(id) = conn.id {
                        self.handle(now, Input::ConnectFailed { conn: id });
                    }
                }
            }
            return;
        }
        // A connection on the ready list is read at the next `drive`, within its budget.
        let read = readable && !conn.queued_read;
        if writable && (!conn.queue.is_empty() || conn.shutdown && !conn.shut) {
            self.mark_dirty(token);
        }
        if read {
            self.read(now, token, true);
        }
    }

    fn accept(&mut self, now: Instant, index: usize) {
        loop {
            let Some((listener_id, listener, listener_local)) = self.listeners.get_mut(index) else {
                return;
            };
            let (listener_id, listener_local) = (*listener_id, *listener_local);
            match self.net.accept(index | LISTENER_BIT, listener) {
                Ok((mut stream, peer)) => {
                    let local = match listener_local.map_or_else(|| net::local_addr(&stream), Ok) {
                        Ok(local) => local,
                        Err(e) => {
                            tracing::debug!("accepted socket without a local address: {e}");
                            self.net.close(stream);
                            continue;
                        }
                    };
                    if !net::ACCEPT_INHERITS_NODELAY {
                        if let Err(e) = net::set_nodelay(&stream) {
                            tracing::debug!("TCP_NODELAY: {e}");
                        }
                    }
                    let entry = self.conns.vacant_entry();
                    let token = entry.key();
                    if let Err(e) = self.net.register(token, &mut stream) {
                        tracing::warn!("cannot watch an accepted connection: {e}");
                        self.net.close(stream);
                        continue;
                    }
                    let id = self.proxy.accept(now, listener_id, peer, local);
                    tracing::trace!(conn = id.0, %peer, %local, "accepted");
                    entry.insert(Conn::new(id, Some(stream), false));
                    self.map(id, token);
                    self.execute(now);
                    // No read yet: the registration reports the token (readable once the peer's
                    // first bytes are there), and a read now would often find nothing, or
                    // take the bytes that report announces and leave it to a second read
                    // that finds nothing.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads until the socket is empty (a read came back short, or `WouldBlock`), the
    /// connection is paused or closed, or its budget for this wake-up is spent (then it goes
    /// on the ready list). `reported`: for a readiness report (which, if it finds something,
    /// shortens the next turn of the connections on the ready list).
    fn read(&mut self, now: Instant, token: usize, reported: bool) {
        let mut budget = self.budget;
        loop {
            let Some(conn) = self.conns.get_mut(token) else { return };
            let (Some(id), Some(stream)) = (conn.id, conn.stream.as_mut()) else { return };
            if conn.connecting || conn.paused || conn.read_closed {
                return;
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
                self.buf.reserve(READ_BLOCK);
            }
            let room = self.buf.capacity() - self.buf.len();
            match self.net.read(token, stream, &mut self.buf) {
                Ok(0) => {
                    conn.read_closed = true;
                    self.contended |= reported;
                    self.handle(now, Input::ReadClosed { conn: id });
                    return;
                }
                Ok(n) => {
                    self.contended |= reported;
                    // Short: the receive queue is empty (unless a FIN or an error came too).
                    let drained = n < room && !conn.read_to_end && !self.net.more_to_read(token, stream);
                    let data = self.buf.split().freeze();
                    self.handle(now, Input::Data { conn: id, data });
                    if drained {
                        return;
                    }
                    if n >= budget {
                        self.queue_read(token);
                        return;
                    }
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(conn = id.0, "read failed: {e}");
                    self.lost(now, token, CloseReason::Reset);
                    return;
                }
            }
        }
    }

    /// Writes the queue (vectored, up to [`MAX_IOV`] chunks a call) until it is empty or the
    /// socket is full, then the FIN or the close it was waiting for; reports `Flushed`.
    fn flush(&mut self, now: Instant, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        conn.dirty = false;
        let Some(stream) = conn.stream.as_mut() else { return };
        if conn.connecting {
            return;
        }
        let mut written = 0;
        let mut error = None;
        while !conn.queue.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, chunk) in iov.iter_mut().zip(&conn.queue) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            match self.net.write(token, stream, &iov[..count]) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => {
                    written += n;
                    let mut left = n;
                    while left > 0 {
                        let front = conn.queue.front_mut().expect("wrote more than was queued");
                        if front.len() <= left {
                            left -= front.len();
                            conn.queue.pop_front();
                        } else {
                            front.advance(left);
                            left = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let id = conn.id;
        if let Some(e) = error {
            // What did reach the socket no longer matters: the connection is gone.
            tracing::debug!(conn = id.map(|id| id.0), "write failed: {e}");
            self.lost(now, token, CloseReason::WriteError);
            return;
        }
        if conn.queue.is_empty() && conn.shutdown && !conn.shut {
            conn.shut = true;
            if let Err(e) = net::shutdown_write(stream) {
                tracing::debug!(token, "shutdown failed: {e}");
            }
        }
        if let (Some(id), true) = (id, written > 0) {
            self.handle(now, Input::Flushed { conn: id, bytes: written });
        }
    }

    /// The socket failed: close it and tell the core, which will still send `Close`.
    fn lost(&mut self, now: Instant, token: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        conn.queue.clear();
        if let Some(stream) = conn.stream.take() {
            self.net.close(stream);
        }
        if let Some(id) = conn.id {
            self.handle(now, Input::Closed { conn: id, reason });
        }
    }

    /// Takes a closed connection out of its slot; the slot is freed at the next `drive`.
    fn release(&mut self, token: usize) -> Conn<N::Stream> {
        self.released.push(token);
        mem::replace(&mut self.conns[token], Conn::released())
    }

    /// Has the connection read at the next `drive` (once, however often it is asked).
    fn queue_read(&mut self, token: usize) {
        let conn = &mut self.conns[token];
        if !conn.queued_read {
            conn.queued_read = true;
            self.ready.push(token);
        }
    }

    fn mark_dirty(&mut self, token: usize) {
        let conn = &mut self.conns[token];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push_back(token);
        }
    }

    fn map(&mut self, id: ConnId, token: usize) {
        let index = id.0 as usize;
        if self.tokens.len() <= index {
            self.tokens.resize(index + 1, None);
        }
        debug_assert!(self.tokens[index].is_none(), "the core reused a live id");
        self.tokens[index] = Some(token);
    }

    fn token(&self, id: ConnId) -> Option<usize> {
        let token = self.tokens.get(id.0 as usize).copied().flatten();
        if token.is_none() {
            tracing::warn!(conn = id.0, "output for an unknown connection");
        }
        token
    }

    /// Executes the core's outputs until it has none, feeding inputs found on the way (a bind
    /// or connect that failed at once) only when the output queue is empty, so that an id the
    /// core hands out is never one whose `Close` is still waiting to be executed.
    fn execute(&mut self, now: Instant) {
        loop {
            while let Some(output) = self.proxy.poll_output() {
                self.apply(output);
            }
            match self.deferred.pop_front() {
                Some(input) => {
                    trace_input(&input);
                    self.proxy.handle(now, input);
                }
                None => return,
            }
        }
    }

    fn apply(&mut self, output: Output) {
        match &output {
            Output::Write { conn, data } => tracing::trace!(conn = conn.0, len = data.len(), "output: write"),
            output => tracing::trace!(?output, "output"),
        }
        match output {
            Output::Listen { listener, addr } => {
                let entry = self.listeners.vacant_entry();
                match self.net.listen(entry.key() | LISTENER_BIT, addr) {
                    Ok(socket) => {
                        tracing::debug!("listening on {addr}");
                        // Bound to one address, the listener's address is every accepted
                        // connection's: no `getsockname` per connection.
                        let local =
                            net::local_addr(&socket).ok().filter(|local| !local.ip().is_unspecified());
                        entry.insert((listener, socket, local));
                    }
                    Err(e) => {
                        tracing::error!("cannot listen on {addr}: {e}");
                        self.listen_failed = true;
                        self.deferred.push_back(Input::ListenFailed { listener });
                    }
                }
            }
            Output::Unlisten { listener } => {
                let found =
                    self.listeners.iter().find(|(_, (id, ..))| *id == listener).map(|(index, _)| index);
                if let Some(index) = found {
                    let (_, socket, _) = self.listeners.remove(index);
                    self.net.unlisten(socket);
                }
            }
            Output::Connect { conn, addr } => {
                let entry = self.conns.vacant_entry();
                let token = entry.key();
                let stream = self.net.connect(addr).and_then(|mut stream| {
                    match self.net.register(token, &mut stream) {
                        Ok(()) => Ok(stream),
                        Err(e) => {
                            self.net.close(stream);
                            Err(e)
                        }
                    }
                });
                match stream {
                    Ok(stream) => {
                        entry.insert(Conn::new(conn, Some(stream), true));
                    }
                    Err(e) => {
                        tracing::debug!(conn = conn.0, "connect to {addr} failed: {e}");
                        entry.insert(Conn::new(conn, None, false));
                        self.deferred.push_back(Input::ConnectFailed { conn });
                    }
                }
                self.map(conn, token);
            }
            Output::Write { conn, data } => {
                let Some(token) = self.token(conn) else { return };
                let c = &mut self.conns[token];
                if c.stream.is_some() && !data.is_empty() {
                    c.queue.push_back(data);
                    self.mark_dirty(token);
                }
            }
            Output::Shutdown { conn } => {
                let Some(token) = self.token(conn) else { return };
                self.conns[token].shutdown = true;
                self.mark_dirty(token);
            }
            Output::Close { conn, kind } => {
                let Some(token) = self.token(conn) else { return };
                self.tokens[conn.0 as usize] = None;
                // The core closes gracefully only once everything queued was flushed.
                debug_assert!(kind == CloseKind::Abort || self.conns[token].queue.is_empty());
                if let Some(stream) = self.release(token).stream {
                    if kind == CloseKind::Abort {
                        if let Err(e) = net::set_abort_on_close(&stream) {
                            tracing::debug!(conn = conn.0, "SO_LINGER: {e}");
                        }
                    }
                    self.net.close(stream);
                }
            }
            Output::PauseRead { conn } => {
                let Some(token) = self.token(conn) else { return };
                let c = &mut self.conns[token];
                if !c.paused {
                    c.paused = true;
                    if let Some(stream) = c.stream.as_mut() {
                        self.net.set_reading(token, stream, false);
                    }
                }
            }
            Output::ResumeRead { conn } => {
                let Some(token) = self.token(conn) else { return };
                let c = &mut self.conns[token];
                if c.paused {
                    c.paused = false;
                    if let Some(stream) = c.stream.as_mut() {
                        self.net.set_reading(token, stream, true);
                        // Readiness may have been reported (and ignored) while paused.
                        self.queue_read(token);
                    }
                }
            }
            Output::Resolve { query, host } => self.net.resolve(query, host),
            Output::Log { sink, line } => self.logs.write(sink, line),
        }
    }
}

fn trace_input(input: &Input) {
    match input {
        Input::Data { conn, data } => tracing::trace!(conn = conn.0, len = data.len(), "input: data"),
        input => tracing::trace!(?input, "input"),
    }
}

/// A worker's entropy for the core (request ids), from the standard library's per-process
/// random hash keys, so no extra crate is needed for it.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}
