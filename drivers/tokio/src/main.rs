//! burrow on tokio: one current-thread runtime (with a `LocalSet`) per worker thread.
//!
//! Design: one task per worker owns the core and all of its sockets, exactly like the mio
//! loop; there are no per-connection tasks and no channels. Sockets are tokio's, registered
//! with the runtime's reactor; the task reads (one `recv` inside `try_io`) and writes
//! (`try_write_vectored`), and on `WouldBlock` registers interest with `poll_read_ready` /
//! `poll_write_ready`, passing a waker that names the socket's token. Those wakers push the
//! token onto a ready list and wake the task, which then reports the tokens to
//! [`burrow_driver::Engine`] just as mio reports its events. So the core gets exactly the
//! inputs the mio driver gives it, and the read buffer is the engine's single `BytesMut` per
//! worker (read into its spare capacity without zeroing). A read that comes back short
//! clears the socket's read readiness as a `WouldBlock` would (as tokio's own `AsyncRead`
//! does), so the engine needs no second read to learn that the socket is empty. DNS uses
//! `tokio::net::lookup_host` in a local task; timers are one `sleep_until` on the core's
//! deadline.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use burrow_core::{Input, QueryId};
use burrow_driver::engine::LISTENER_BIT;
use burrow_driver::{dns, net, Engine, Net, Worker};
use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::LocalSet;

fn main() -> ExitCode {
    burrow_driver::main(worker)
}

fn worker(worker: Worker) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    // The loop yields whenever it has nothing left to do, so tokio's cooperative budget (which
    // would make readiness polls return `Pending` spuriously) is not needed.
    let result = LocalSet::new().block_on(&runtime, tokio::task::unconstrained(serve(worker)));
    // Don't wait for lookups still blocked in the resolver: their answers are not wanted.
    runtime.shutdown_background();
    result
}

async fn serve(worker: Worker) -> Result<(), String> {
    let wakes = Arc::new(Wakes::default());
    let stop_wakes = wakes.clone();
    worker.stop.on_stop(move || stop_wakes.wake());
    let net = TokioNet { wakes: wakes.clone(), conn_wakers: Vec::new(), listener_wakers: Vec::new() };
    let mut engine = Engine::new(net, &worker);
    let mut woken = Woken::default();
    let mut sleep = Box::pin(tokio::time::sleep_until(Instant::now().into()));
    let mut armed = None;
    loop {
        engine.drive(Instant::now());
        if engine.is_finished() {
            return engine.result();
        }
        if engine.has_work() {
            // Reads left over for fairness: let the reactor run once, then carry on.
            tokio::task::yield_now().await;
            wakes.take(&mut woken, None);
        } else {
            let deadline = engine.deadline();
            if deadline != armed {
                if let Some(deadline) = deadline {
                    sleep.as_mut().reset(deadline.into());
                }
                armed = deadline;
            }
            poll_fn(|cx| {
                if wakes.take(&mut woken, Some(cx.waker())) {
                    Poll::Ready(())
                } else if armed.is_some() {
                    sleep.as_mut().poll(cx)
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
        let now = Instant::now();
        for token in woken.tokens.drain(..) {
            // The socket's own readiness (tokio's, asked by every call) says what is there.
            engine.ready(now, token, true, true, false);
        }
        for input in woken.inputs.drain(..) {
            engine.handle(now, input);
        }
    }
}

/// What woke the worker task: sockets (by token), DNS answers, or the stop signal. Written from
/// the reactor (same thread) and the signal thread.
#[derive(Default)]
struct Wakes(Mutex<WakeState>);

#[derive(Default)]
struct WakeState {
    tokens: Vec<usize>,
    inputs: Vec<Input>,
    notified: bool,
    task: Option<Waker>,
}

#[derive(Default)]
struct Woken {
    tokens: Vec<usize>,
    inputs: Vec<Input>,
}

impl Wakes {
    fn push_token(&self, token: usize) {
        let mut state = self.0.lock().unwrap();
        state.tokens.push(token);
        Self::notify(state);
    }

    fn push_input(&self, input: Input) {
        let mut state = self.0.lock().unwrap();
        state.inputs.push(input);
        Self::notify(state);
    }

    fn wake(&self) {
        let mut state = self.0.lock().unwrap();
        state.notified = true;
        Self::notify(state);
    }

    fn notify(mut state: std::sync::MutexGuard<'_, WakeState>) {
        let task = state.task.take();
        drop(state);
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Moves what arrived into `into` (whose lists are empty); true if anything did. Otherwise
    /// `task` (if given) is woken on the next arrival.
    fn take(&self, into: &mut Woken, task: Option<&Waker>) -> bool {
        let mut state = self.0.lock().unwrap();
        let any = state.notified || !state.tokens.is_empty() || !state.inputs.is_empty();
        state.notified = false;
        mem::swap(&mut state.tokens, &mut into.tokens);
        mem::swap(&mut state.inputs, &mut into.inputs);
        if let (false, Some(task)) = (any, task) {
            if !state.task.as_ref().is_some_and(|w| w.will_wake(task)) {
                state.task = Some(task.clone());
            }
        }
        any
    }
}

/// The waker handed to tokio for one socket: it reports the socket's token.
struct TokenWaker {
    token: usize,
    wakes: Arc<Wakes>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.push_token(self.token);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.push_token(self.token);
    }
}

struct TokioNet {
    wakes: Arc<Wakes>,
    /// One waker per token, made once and reused by whatever socket gets the token next (a
    /// stale wake-up is only a spurious readiness report).
    conn_wakers: Vec<Option<Waker>>,
    listener_wakers: Vec<Option<Waker>>,
}

impl TokioNet {
    fn waker(&mut self, token: usize) -> &Waker {
        let (wakers, index) = if token & LISTENER_BIT != 0 {
            (&mut self.listener_wakers, token & !LISTENER_BIT)
        } else {
            (&mut self.conn_wakers, token)
        };
        if wakers.len() <= index {
            wakers.resize(index + 1, None);
        }
        wakers[index]
            .get_or_insert_with(|| Waker::from(Arc::new(TokenWaker { token, wakes: self.wakes.clone() })))
    }
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Net for TokioNet {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn listen(&mut self, token: usize, addr: SocketAddr) -> io::Result<TcpListener> {
        let listener = TcpListener::from_std(net::listen(addr)?)?;
        // Have the listener's first readiness reported.
        self.waker(token).wake_by_ref();
        Ok(listener)
    }

    fn unlisten(&mut self, listener: TcpListener) {
        drop(listener);
    }

    fn accept(&mut self, token: usize, listener: &mut TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        match listener.poll_accept(&mut Context::from_waker(self.waker(token))) {
            Poll::Ready(accepted) => accepted,
            Poll::Pending => Err(would_block()),
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::from_std(net::connect(addr)?)
    }

    fn register(&mut self, token: usize, _: &mut TcpStream) -> io::Result<()> {
        // Registered with the reactor on creation, but a waker is only handed over by a call
        // that would block: have the token reported once so the engine makes that call (for a
        // connecting socket, `poll_connect`).
        self.waker(token).wake_by_ref();
        Ok(())
    }

    fn poll_connect(&mut self, token: usize, stream: &TcpStream, _: bool) -> Poll<io::Result<()>> {
        // Write readiness comes from this socket's own events (a fresh registration has none):
        // the handshake has ended, one way or the other.
        match stream.poll_write_ready(&mut Context::from_waker(self.waker(token))) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(net::connect_result(stream)),
        }
    }

    fn read(&mut self, token: usize, stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        let stream = &*stream;
        let room = buf.capacity() - buf.len();
        loop {
            // A short read drained the receive queue: clear the readiness as `WouldBlock`
            // does (`try_io` clears only what it saw, so an event that came in between stays,
            // and so does a FIN: closed states are never cleared).
            let mut short = None;
            let result = stream.try_io(Interest::READABLE, || {
                let n = net::recv(stream, buf)?;
                if 0 < n && n < room {
                    short = Some(n);
                    return Err(would_block());
                }
                Ok(n)
            });
            if let Some(n) = short {
                return Ok(n);
            }
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match stream.poll_read_ready(&mut Context::from_waker(self.waker(token))) {
                        Poll::Pending => return Err(e),
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Err(e),
                    }
                }
                result => return result,
            }
        }
    }

    fn more_to_read(&mut self, token: usize, stream: &mut TcpStream) -> bool {
        // What the short read left: a FIN or an error (or an event since); otherwise the
        // waker is registered for the next bytes.
        stream.poll_read_ready(&mut Context::from_waker(self.waker(token))).is_ready()
    }

    fn write(&mut self, token: usize, stream: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match stream.poll_write_ready(&mut Context::from_waker(self.waker(token))) {
                        Poll::Pending => return Err(e),
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Err(e),
                    }
                }
                result => return result,
            }
        }
    }

    fn set_reading(&mut self, _: usize, _: &mut TcpStream, _: bool) {
        // Read interest is only registered by a read that would block, and a paused
        // connection is not read; a resume reads at once.
    }

    fn close(&mut self, stream: TcpStream) {
        drop(stream);
    }

    fn resolve(&mut self, query: QueryId, host: String) {
        let wakes = self.wakes.clone();
        tokio::task::spawn_local(async move {
            let addrs = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => dns::unique(addrs.map(|addr| addr.ip())),
                Err(e) => {
                    tracing::debug!(host, "resolution failed: {e}");
                    Vec::new()
                }
            };
            wakes.push_input(Input::Resolved { query, addrs });
        });
    }
}
