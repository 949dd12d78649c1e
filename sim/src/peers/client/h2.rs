//! The HTTP/2 CONNECT client: one connection to the proxy and several CONNECT streams on it,
//! each pushing a checked tunnel stream and checking the echo. It is the `h2` crate's client,
//! driven by hand over an in-memory pipe and polled again after every event (no runtime, no
//! wakers to wait for), so a run stays a function of its seed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Ending, TunnelSide};
use crate::ledger::End;
use crate::peer::{Cx, Peer};
use crate::peers::stream;

/// One CONNECT stream of an [`H2ConnectClient`].
#[derive(Clone, Debug)]
pub struct H2TunnelPlan {
    pub id: u64,
    pub authority: String,
    /// Sends `x-sim-odst: 1`: routed to the original-destination cluster (the authority).
    pub odst: bool,
    pub payload: u64,
    /// `Fin`: END_STREAM after the whole stream; `Reset(at)` or `Close(at)`: RST_STREAM after
    /// `at` stream bytes.
    pub ending: Ending,
}

#[derive(Clone, Debug)]
pub struct H2ConnectPlan {
    pub tunnels: Vec<H2TunnelPlan>,
    /// The targets write a banner first.
    pub banner: bool,
    pub calm: bool,
}

/// The client's end of its connection: bytes the proxy sent wait here for h2 to read, and what
/// h2 writes waits for the peer to write it.
#[derive(Clone, Default)]
struct Pipe(Rc<RefCell<PipeState>>);

#[derive(Default)]
struct PipeState {
    inbound: VecDeque<u8>,
    eof: bool,
    outbound: Vec<u8>,
}

impl AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.0.borrow_mut();
        let n = state.inbound.len().min(buf.remaining());
        if n == 0 && !state.eof {
            return Poll::Pending;
        }
        let (front, back) = state.inbound.as_slices();
        let first = front.len().min(n);
        buf.put_slice(&front[..first]);
        buf.put_slice(&back[..n - first]);
        state.inbound.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().outbound.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

type Handshake =
    Pin<Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<Pipe, Bytes>), h2::Error>>>>;

enum Conn {
    Handshaking(Handshake),
    Open(SendRequest<Bytes>, Box<Connection<Pipe, Bytes>>),
    Over,
}

struct Tunnel {
    plan: H2TunnelPlan,
    side: TunnelSide,
    state: State,
}

enum State {
    /// Not asked yet (the connection is not up, or has no stream to spare).
    Waiting,
    Asked(ResponseFuture, SendStream<Bytes>),
    /// Open: the echo is read until END_STREAM or a reset. The send half is kept so that a
    /// stream ended by END_STREAM is not cancelled by dropping it.
    Open {
        recv: RecvStream,
        _send: SendStream<Bytes>,
    },
    /// Answered with an error status, reset, or read to its end.
    Over,
}

/// An HTTP/2 client that opens several CONNECT tunnels on one connection.
pub struct H2ConnectClient {
    plan: H2ConnectPlan,
    io: Pipe,
    conn: Conn,
    tunnels: Vec<Tunnel>,
    eof: bool,
    reset: bool,
    closed: bool,
    refused: bool,
    /// Bytes written to the connection so far.
    written: u64,
    /// The first request's HEADERS went out: its end is declared to the world.
    asked: bool,
}

impl H2ConnectClient {
    pub fn new(plan: H2ConnectPlan) -> H2ConnectClient {
        let io = Pipe::default();
        let handshake: Handshake = Box::pin(h2::client::handshake(io.clone()));
        let banner = if plan.banner { crate::peers::BANNER.len() as u64 } else { 0 };
        let tunnels = plan
            .tunnels
            .iter()
            .map(|t| Tunnel {
                plan: t.clone(),
                side: TunnelSide { id: t.id, len: t.payload, banner, base: 0, got: 0, ending: t.ending },
                state: State::Waiting,
            })
            .collect();
        H2ConnectClient {
            plan,
            io,
            conn: Conn::Handshaking(handshake),
            tunnels,
            eof: false,
            reset: false,
            closed: false,
            refused: false,
            written: 0,
            asked: false,
        }
    }

    /// Polls h2 until nothing moves, then writes what it wrote.
    fn pump(&mut self, cx: &mut Cx<'_>) {
        let mut poll = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            let mut moved = false;
            match &mut self.conn {
                Conn::Handshaking(handshake) => match handshake.as_mut().poll(&mut poll) {
                    Poll::Ready(Ok((send, connection))) => {
                        self.conn = Conn::Open(send, Box::new(connection));
                        moved = true;
                    }
                    Poll::Ready(Err(_)) => self.conn = Conn::Over,
                    Poll::Pending => {}
                },
                Conn::Open(_, connection) => {
                    if Pin::new(&mut **connection).poll(&mut poll).is_ready() {
                        self.conn = Conn::Over;
                        moved = true;
                    }
                }
                Conn::Over => {}
            }
            if let Conn::Open(send, _) = &mut self.conn {
                for tunnel in self.tunnels.iter_mut().filter(|t| matches!(t.state, State::Waiting)) {
                    if !matches!(send.poll_ready(&mut poll), Poll::Ready(Ok(()))) {
                        break;
                    }
                    let mut request =
                        http::Request::builder().method("CONNECT").uri(tunnel.plan.authority.as_str());
                    if tunnel.plan.odst {
                        request = request.header("x-sim-odst", "1");
                    }
                    let request = request.body(()).expect("a CONNECT request");
                    match send.send_request(request, false) {
                        Ok((response, body)) => tunnel.state = State::Asked(response, body),
                        Err(_) => tunnel.state = State::Over,
                    }
                    cx.ledger.tunnel(tunnel.plan.id);
                    moved = true;
                }
            }
            for tunnel in &mut self.tunnels {
                moved |= tunnel.poll(cx, &mut poll, self.plan.calm);
            }
            let out = std::mem::take(&mut self.io.0.borrow_mut().outbound);
            if !out.is_empty() && !self.closed && !self.reset {
                self.written += out.len() as u64;
                cx.write(out);
                moved = true;
                let requested = self.tunnels.iter().any(|t| !matches!(t.state, State::Waiting));
                if requested && !self.asked {
                    // The first CONNECT's HEADERS are in what was just written: the proxy
                    // may open connections once it has read this far.
                    self.asked = true;
                    cx.head_end(self.written);
                }
            }
            if !moved {
                break;
            }
        }
        // Every tunnel is over: the client is done with its connection.
        if !self.closed && !self.reset && self.tunnels.iter().all(|t| matches!(t.state, State::Over)) {
            self.closed = true;
            cx.close();
        }
    }
}

impl Tunnel {
    /// Moves this stream on; true if anything happened.
    fn poll(&mut self, cx: &mut Cx<'_>, poll: &mut Context<'_>, calm: bool) -> bool {
        let id = self.plan.id;
        match &mut self.state {
            State::Waiting | State::Over => false,
            State::Asked(response, _) => {
                let Poll::Ready(answer) = Pin::new(response).poll(poll) else { return false };
                let State::Asked(_, mut send) = std::mem::replace(&mut self.state, State::Over) else {
                    unreachable!("matched above")
                };
                match answer {
                    Ok(response) if response.status().is_success() => {
                        if response.status() != 200 {
                            cx.violation(format!("CONNECT {id:#x}: {} instead of 200", response.status()));
                        }
                        cx.ledger.tunnel(id).opened = true;
                        let stop = self.side.stop_at();
                        if stop > 0 {
                            let fin = self.plan.ending == Ending::Fin;
                            let _ = send.send_data(Bytes::from(stream(id, self.plan.payload, 0, stop)), fin);
                        } else if self.plan.ending == Ending::Fin {
                            let _ = send.send_data(Bytes::new(), true);
                        }
                        let record = cx.ledger.tunnel(id);
                        record.client_sent = stop;
                        if self.plan.ending == Ending::Fin {
                            record.client_fin = true;
                            self.state = State::Open { recv: response.into_body(), _send: send };
                        } else {
                            send.send_reset(h2::Reason::CANCEL);
                            record.client_reset = true;
                            cx.tally.fault("client-resets-stream");
                        }
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        cx.tally.local_reply(status);
                        if calm {
                            cx.violation(format!(
                                "CONNECT {id:#x}: answered {status} in a run without faults"
                            ));
                        }
                        if !matches!(status, 403 | 404 | 503 | 400) {
                            cx.violation(format!("CONNECT {id:#x}: unexpected status {status}"));
                        }
                    }
                    Err(error) => {
                        if calm {
                            cx.violation(format!(
                                "CONNECT {id:#x}: no answer in a run without faults: {error}"
                            ));
                        }
                    }
                }
                true
            }
            State::Open { recv, .. } => match recv.poll_data(poll) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.side.verify(cx, &data);
                    true
                }
                Poll::Ready(None) => {
                    cx.ledger.tunnel(id).client_end = Some(End::Eof { by_timer: false });
                    self.state = State::Over;
                    true
                }
                Poll::Ready(Some(Err(_))) => {
                    cx.ledger.tunnel(id).client_end = Some(End::Reset);
                    self.state = State::Over;
                    true
                }
                Poll::Pending => false,
            },
        }
    }

    /// The connection is gone under an open stream.
    fn cut(&mut self, cx: &mut Cx<'_>, end: End) {
        if let State::Open { .. } = self.state {
            cx.ledger.tunnel(self.plan.id).client_end = Some(end);
        }
        self.state = State::Over;
    }
}

impl Peer for H2ConnectClient {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        self.pump(cx);
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.reset || self.closed {
            return;
        }
        self.io.0.borrow_mut().inbound.extend(data);
        self.pump(cx);
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.eof = true;
        self.io.0.borrow_mut().eof = true;
        self.pump(cx);
        let end = cx.eof_end();
        for tunnel in &mut self.tunnels {
            tunnel.cut(cx, end);
        }
        if !self.closed && !self.reset {
            self.closed = true;
            cx.close();
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        self.reset = true;
        for tunnel in &mut self.tunnels {
            tunnel.cut(cx, End::Reset);
        }
    }

    fn on_refused(&mut self, _cx: &mut Cx<'_>) {
        self.refused = true;
    }

    fn done(&self) -> bool {
        self.refused || self.reset || self.closed
    }

    fn is_client(&self) -> bool {
        true
    }

    fn streams(&self) -> Option<u64> {
        Some(self.tunnels.len() as u64)
    }

    fn describe(&self) -> String {
        let states: Vec<&str> = self
            .tunnels
            .iter()
            .map(|t| match t.state {
                State::Waiting => "waiting",
                State::Asked(..) => "asked",
                State::Open { .. } => "open",
                State::Over => "over",
            })
            .collect();
        format!(
            "HTTP/2 CONNECT client {:#x}.. ({} tunnels: {states:?}) eof={} reset={} closed={}",
            self.plan.tunnels.first().map_or(0, |t| t.id),
            self.tunnels.len(),
            self.eof,
            self.reset,
            self.closed
        )
    }
}
