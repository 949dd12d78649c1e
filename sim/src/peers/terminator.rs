//! The CONNECT terminator: an HTTP/1.1 server at the far end of a TCP proxy's
//! `tunneling_config`. It checks each tunnel request byte for byte, answers it after a seeded
//! delay (200 and then an echoed tunnel, a 407 or 503, a close or a reset without an answer,
//! or nothing at all), and checks that no tunnel byte reaches it before its 2xx: none before
//! it has answered, and none the proxy wrote before it had read the whole 2xx.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::server::{Echo, EchoMode};
use super::{Done, Item, Outbox, BANNER};
use crate::http::preview;
use crate::peer::{Cx, Peer};
use crate::rng::Rng;

/// The header a scenario's `headers_to_add` names each client by, and its value in the config.
pub const PEER_HEADER: &str = "x-sim-peer";
pub const PEER_FORMAT: &str = "%DOWNSTREAM_REMOTE_ADDRESS%";

/// What a scenario's terminators expect and do (per-mille chances per tunnel request).
#[derive(Clone, Debug, Default)]
pub struct TerminatorProfile {
    /// The exact tunnel request, with [`PEER_FORMAT`] where the client's address goes.
    pub head: String,
    /// Answer 407 or 503.
    pub refuse: u32,
    /// Close or reset without answering.
    pub hang_up: u32,
    /// Never answer.
    pub never: u32,
    /// Delay before answering, microseconds; `slow`: the chance of 0.5 to 10 s instead.
    pub think_us: (u64, u64),
    pub slow: u32,
    /// A refusal keeps the connection open (no `connection: close`).
    pub keep_alive: u32,
    /// A banner follows the 200.
    pub banner: bool,
    /// What the tunnel's echo does (as an echo target's).
    pub echo_faults: u32,
    pub slow_write: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a tunnel request head.
    Head,
    /// Got the request of this tunnel; the answer is due (at the timer numbered by the
    /// request count, unless it never answers).
    Waiting(u64),
    /// Answered 200: the tunnel of this id.
    Tunnel(u64),
    Closed,
}

const ANSWER: u64 = 1;
/// Marks the end of the 200's head in the outbox: tunnel bytes follow.
const TUNNEL: u64 = 1 << 60;

/// One connection of a CONNECT terminator.
pub struct Terminator {
    rng: Rng,
    p: Rc<TerminatorProfile>,
    out: Outbox,
    state: State,
    /// Head bytes so far.
    buf: Vec<u8>,
    /// Bytes received on this connection so far.
    received: u64,
    /// Tunnel bytes that came before the answer (a violation, kept for the echo).
    early: Vec<u8>,
    /// Offset of the end of the 200's head in what this terminator wrote.
    answer_end: u64,
    echo: Option<Echo>,
    tunnel_started: bool,
    requests: u32,
}

impl Terminator {
    pub fn new(mut rng: Rng, p: Rc<TerminatorProfile>) -> Terminator {
        let out = Outbox::new(super::pace(&mut rng, p.slow_write));
        Terminator {
            rng,
            p,
            out,
            state: State::Head,
            buf: Vec::new(),
            received: 0,
            early: Vec::new(),
            answer_end: 0,
            echo: None,
            tunnel_started: false,
            requests: 0,
        }
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.after(cx, done);
    }

    fn after(&mut self, cx: &mut Cx<'_>, done: Vec<Done>) {
        if let Some(echo) = &mut self.echo {
            // Tunnel bytes are those written after the 200's head.
            let from = if self.tunnel_started {
                0
            } else {
                match done.iter().position(|d| *d == Done::Mark(TUNNEL)) {
                    Some(at) => {
                        self.tunnel_started = true;
                        if let State::Tunnel(id) = self.state {
                            cx.ledger.tunnel(id).opened = true;
                        }
                        at + 1
                    }
                    None => done.len(),
                }
            };
            echo.record(cx, &done[from..]);
        }
        if done.iter().any(|d| matches!(d, Done::Close | Done::Reset)) && self.echo.is_none() {
            self.state = State::Closed;
        }
    }

    /// A whole request head: which client's it is, is it exactly the configured one, and
    /// how it will be answered.
    fn on_head(&mut self, cx: &mut Cx<'_>, head: Vec<u8>) {
        let text = String::from_utf8_lossy(&head).into_owned();
        let marker = format!("\r\n{PEER_HEADER}: ");
        let addr = text
            .find(&marker)
            .map(|at| &text[at + marker.len()..])
            .and_then(|rest| rest.split("\r\n").next())
            .and_then(|v| v.parse::<SocketAddr>().ok());
        let Some((addr, id)) = addr.and_then(|a| cx.ledger.remote_tunnels.get(&a).map(|id| (a, *id))) else {
            cx.violation(format!("terminator: a tunnel request that names no client: {}", preview(&head)));
            self.out.push(Item::Reset);
            self.run(cx);
            return;
        };
        let want = self.p.head.replace(PEER_FORMAT, &addr.to_string());
        if head != want.as_bytes() {
            cx.violation(format!(
                "tunnel {id:#x}: the terminator got the request {:?}, want {want:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        cx.ledger.tunnel(id).heads += 1;
        self.requests += 1;
        self.state = State::Waiting(id);
        if self.rng.chance(self.p.never) {
            cx.tally.fault("terminator-never-answers");
            return;
        }
        let delay = if self.rng.chance(self.p.slow) {
            cx.tally.fault("terminator-slow");
            Duration::from_millis(self.rng.range(500, 10_000))
        } else {
            let (lo, hi) = self.p.think_us;
            Duration::from_micros(self.rng.range(lo, hi))
        };
        cx.timer(delay, ANSWER | u64::from(self.requests) << 8);
    }

    fn answer(&mut self, cx: &mut Cx<'_>, id: u64) {
        let roll = self.rng.below(1000) as u32;
        if roll < self.p.refuse {
            let status = *self.rng.pick(&[407u16, 503]);
            let body: &[u8] = match self.rng.below(3) {
                0 => b"",
                1 => b"no tunnel for you",
                _ => b"{\"error\":\"refused\"}",
            };
            let keep_alive = self.rng.chance(self.p.keep_alive);
            let mut head = format!("HTTP/1.1 {status} Sim Refusal\r\ncontent-length: {}\r\n", body.len());
            if status == 407 {
                head.push_str("proxy-authenticate: Basic realm=\"sim\"\r\n");
            }
            if !keep_alive {
                head.push_str("connection: close\r\n");
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            cx.tally.fault("terminator-refuses");
            cx.ledger.tunnel(id).refusals += 1;
            *cx.ledger.refusals.entry(status).or_default() += 1;
            self.out.push(Item::Data(bytes));
            if keep_alive {
                self.state = State::Head;
            } else {
                self.out.push(Item::Close);
            }
        } else if roll < self.p.refuse + self.p.hang_up {
            cx.tally.fault("terminator-hangs-up");
            cx.ledger.tunnel(id).refusals += 1;
            self.out.push(if self.rng.chance(500) { Item::Close } else { Item::Reset });
        } else {
            let head: &[u8] = match self.rng.below(3) {
                0 => b"HTTP/1.1 200 OK\r\n\r\n",
                1 => b"HTTP/1.1 200 Connection established\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nserver: sim-terminator\r\nx-sim-tunnel: open\r\n\r\n",
            };
            self.out.push(Item::Data(head.to_vec()));
            self.answer_end = self.out.queued;
            self.out.push(Item::Mark(TUNNEL));
            let mode = if self.rng.chance(self.p.echo_faults) {
                let n = self.rng.range(0, 40_000);
                match self.rng.below(3) {
                    0 => EchoMode::FinAfter(n),
                    1 => EchoMode::ResetAfter(n),
                    _ => EchoMode::CloseAfter(n),
                }
            } else {
                EchoMode::Echo
            };
            let mut echo = Echo::new(mode, Some(id));
            if self.p.banner {
                self.out.push(Item::Data(BANNER.to_vec()));
            }
            if let EchoMode::FinAfter(0) = mode {
                self.out.push(Item::Fin);
            }
            let early = std::mem::take(&mut self.early);
            if !early.is_empty() {
                echo.on_data(cx, &early, &mut self.out);
            }
            self.echo = Some(echo);
            self.state = State::Tunnel(id);
        }
        self.run(cx);
    }
}

impl Peer for Terminator {
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        let at = self.received;
        self.received += data.len() as u64;
        match self.state {
            State::Closed => {}
            State::Tunnel(id) => {
                // The proxy wrote this byte after reading the whole 2xx, or it sent tunnel
                // bytes on an answer it had not seen.
                let read = cx.delivered_when_written(at);
                if read < self.answer_end {
                    cx.violation(format!(
                        "tunnel {id:#x}: the proxy wrote a tunnel byte when it had read {read} of the {} bytes up to the end of the terminator's 200",
                        self.answer_end
                    ));
                }
                if let Some(echo) = &mut self.echo {
                    echo.on_data(cx, data, &mut self.out);
                }
                self.run(cx);
            }
            State::Waiting(id) => {
                cx.violation(format!(
                    "tunnel {id:#x}: {} tunnel bytes reached the terminator before it answered: {}",
                    data.len(),
                    preview(data)
                ));
                self.early.extend_from_slice(data);
            }
            State::Head => {
                self.buf.extend_from_slice(data);
                let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if self.buf.len() > 64 * 1024 {
                        cx.violation(format!("terminator: no end to a request head: {}", preview(&self.buf)));
                        self.state = State::Closed;
                        self.out.push(Item::Reset);
                        self.run(cx);
                    }
                    return;
                };
                let rest = self.buf.split_off(end + 4);
                let head = std::mem::take(&mut self.buf);
                self.on_head(cx, head);
                if let (State::Waiting(id), false) = (self.state, rest.is_empty()) {
                    cx.violation(format!(
                        "tunnel {id:#x}: {} tunnel bytes came right behind the tunnel request, before any answer: {}",
                        rest.len(),
                        preview(&rest)
                    ));
                    self.early = rest;
                }
            }
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        if let Some(echo) = &mut self.echo {
            echo.on_eof(cx, &mut self.out);
            self.run(cx);
            return;
        }
        // The proxy gave the request up: nothing more to say on this connection.
        self.out.stop();
        if self.state != State::Closed {
            self.state = State::Closed;
            cx.close();
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        if let Some(echo) = &mut self.echo {
            echo.on_reset(cx);
        }
        self.out.stop();
        self.state = State::Closed;
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, token: u64) {
        if token == super::PACE {
            let done = self.out.on_timer(cx, &mut self.rng);
            self.after(cx, done);
        } else if token & 0xff == ANSWER && token >> 8 == u64::from(self.requests) {
            if let State::Waiting(id) = self.state {
                self.answer(cx, id);
            }
        }
    }

    fn on_wind_down(&mut self, cx: &mut Cx<'_>) {
        if self.pooled_http() {
            self.out.push(Item::Close);
            self.run(cx);
        }
    }

    fn done(&self) -> bool {
        true
    }

    fn is_client(&self) -> bool {
        false
    }

    fn serving_tunnel(&self) -> Option<u64> {
        match self.state {
            State::Tunnel(id) => Some(id),
            _ => None,
        }
    }

    fn pooled_http(&self) -> bool {
        // Between requests: nothing read of a head, nothing being answered or written.
        self.state == State::Head && self.buf.is_empty() && self.out.is_empty()
    }

    fn describe(&self) -> String {
        format!(
            "terminator: {} requests, state {:?}, head bytes {}, received {}, echo {:?}",
            self.requests,
            self.state,
            self.buf.len(),
            self.received,
            self.echo.as_ref().map(|e| e.id)
        )
    }
}
