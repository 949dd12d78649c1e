//! The CONNECT client: opens a tunnel and pushes a checked stream through it.

use std::time::Duration;

use super::{stall_check, timed_out_mid_head, Ending, TunnelSide, STALL_END, STALL_START};
use crate::http::{preview, Event, Head, Reader};
use crate::ledger::End;
use crate::peer::{Cx, Peer};
use crate::peers::{stream, Done, Item, Outbox, BANNER};
use crate::rng::Rng;

/// What a CONNECT client does.
#[derive(Clone, Debug)]
pub struct ConnectPlan {
    pub id: u64,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub payload: u64,
    /// Stream bytes sent right behind the head, before any answer (0, or at least the
    /// stream header).
    pub early: u64,
    /// Half-close right after the early bytes (which are then the whole stream).
    pub fin_early: bool,
    pub split_head: Option<(usize, Duration)>,
    pub ending: Ending,
    /// The target writes a banner first.
    pub banner: bool,
    pub pace: Option<(usize, u64)>,
    pub calm: bool,
    /// The proxy's stream idle timeout (`None`: disabled), for the stall check.
    pub stream_idle: Option<Duration>,
}

/// A client that opens a CONNECT tunnel and pushes a stream through it.
pub struct ConnectClient {
    plan: ConnectPlan,
    rng: Rng,
    out: Outbox,
    reader: Reader,
    head_len: u64,
    status: Option<u16>,
    /// The non-2xx answer was complete.
    answered: bool,
    tunnel: Option<TunnelSide>,
    eof: bool,
    reset: bool,
    fin: bool,
    self_reset: bool,
    refused: bool,
    stall_start: Option<Duration>,
}

impl ConnectClient {
    pub fn new(plan: ConnectPlan, rng: Rng) -> ConnectClient {
        let out = Outbox::new(plan.pace);
        let mut reader = Reader::responses();
        reader.methods.push_back("CONNECT".into());
        ConnectClient {
            plan,
            rng,
            out,
            reader,
            head_len: 0,
            status: None,
            answered: false,
            tunnel: None,
            eof: false,
            reset: false,
            fin: false,
            self_reset: false,
            refused: false,
            stall_start: None,
        }
    }

    fn side(&self) -> TunnelSide {
        TunnelSide {
            id: self.plan.id,
            len: self.plan.payload,
            banner: if self.plan.banner { BANNER.len() as u64 } else { 0 },
            base: self.head_len,
            got: 0,
            ending: self.plan.ending,
        }
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.after(cx, done);
    }

    fn after(&mut self, cx: &mut Cx<'_>, done: Vec<Done>) {
        let side = self.side();
        side.record(cx, &done, self.out.written);
        for d in done {
            match d {
                Done::Mark(STALL_START) => self.stall_start = Some(cx.now),
                Done::Mark(STALL_END) => {
                    let ended = self.eof || self.reset;
                    // The start stays: a 408 the proxy sent during the stall may arrive after it.
                    stall_check(cx, self.stall_start, self.plan.stream_idle, ended);
                }
                Done::Fin => self.fin = true,
                Done::Close => {
                    // Closed both ways: it reads no more, so it is done.
                    self.fin = true;
                    self.self_reset = true;
                    cx.tally.fault("client-closes");
                }
                Done::Reset => {
                    self.self_reset = true;
                    cx.tally.fault("client-reset");
                }
                _ => {}
            }
        }
    }
}

impl Peer for ConnectClient {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        let p = &self.plan;
        let mut head = format!("CONNECT {} HTTP/1.1\r\nhost: {}\r\n", p.authority, p.authority);
        for (n, v) in &p.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let head = head.into_bytes();
        self.head_len = head.len() as u64;
        cx.head_end(self.head_len);
        cx.ledger.tunnel(p.id);
        match p.split_head {
            Some((at, pause)) if at > 0 && at < head.len() => {
                cx.tally.fault("client-stalls-in-head");
                self.out.push(Item::Data(head[..at].to_vec()));
                self.out.push(Item::Mark(STALL_START));
                self.out.push(Item::Pause(pause));
                self.out.push(Item::Mark(STALL_END));
                self.out.push(Item::Data(head[at..].to_vec()));
            }
            _ => self.out.push(Item::Data(head)),
        }
        let side = self.side();
        let early_stop = p.early.min(side.stop_at());
        if early_stop > 0 {
            self.out.push(Item::Data(stream(p.id, p.payload, 0, early_stop)));
        }
        if p.early >= side.stop_at() || p.fin_early {
            // Everything goes before the answer; the ending too.
            side.queue_rest(&mut self.out, early_stop);
            self.tunnel = None;
        }
        self.run(cx);
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.reset || self.self_reset {
            return;
        }
        if let Some(t) = &mut self.tunnel {
            t.verify(cx, data);
            return;
        }
        if self.answered {
            cx.violation(format!(
                "CONNECT {:#x}: bytes after a complete refusal: {}",
                self.plan.id,
                preview(data)
            ));
            return;
        }
        let mut events = Vec::new();
        if let Err(e) = self.reader.feed(data, &mut events) {
            cx.violation(format!("CONNECT {:#x}: unparsable answer: {e}", self.plan.id));
            return;
        }
        for ev in events {
            match ev {
                Event::Head(h) => self.on_head(cx, h),
                Event::Body(_) => {}
                Event::End => {
                    if self.status.is_some_and(|s| !(200..300).contains(&s)) {
                        self.answered = true;
                    }
                }
            }
        }
        if let Some(t) = &mut self.tunnel {
            let rest = self.reader.take_raw();
            if !rest.is_empty() {
                t.verify(cx, &rest);
            }
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.eof = true;
        if self.tunnel.is_some() {
            cx.ledger.tunnel(self.plan.id).client_end = Some(cx.eof_end());
        }
        let mut events = Vec::new();
        if self.tunnel.is_none() && self.reader.eof(&mut events).is_err() && self.plan.calm {
            cx.violation(format!("CONNECT {:#x}: answer cut short in a run without faults", self.plan.id));
        }
        if self.tunnel.is_none() || !cx.ledger.tunnel(self.plan.id).opened {
            // No tunnel: nothing more to say.
            self.out.stop();
            if !self.fin && !self.self_reset {
                cx.close();
                self.fin = true;
            }
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        self.reset = true;
        self.out.stop();
        if cx.ledger.tunnel(self.plan.id).opened {
            cx.ledger.tunnel(self.plan.id).client_end = Some(End::Reset);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, token: u64) {
        if token == crate::peers::PACE {
            let done = self.out.on_timer(cx, &mut self.rng);
            self.after(cx, done);
        }
    }

    fn on_refused(&mut self, _cx: &mut Cx<'_>) {
        self.refused = true;
    }

    fn done(&self) -> bool {
        self.refused || self.reset || self.self_reset || (self.eof && self.fin)
    }

    fn is_client(&self) -> bool {
        true
    }

    fn tunnel_id(&self) -> Option<u64> {
        Some(self.plan.id)
    }

    fn describe(&self) -> String {
        format!(
            "CONNECT client {:#x} to {} status={:?} tunnel_got={:?} written={}/{} eof={} fin={} reset={} self_reset={} outbox_empty={}",
            self.plan.id,
            self.plan.authority,
            self.status,
            self.tunnel.as_ref().map(|t| t.got),
            self.out.written,
            self.out.queued,
            self.eof,
            self.fin,
            self.reset,
            self.self_reset,
            self.out.is_empty()
        )
    }
}

impl ConnectClient {
    fn on_head(&mut self, cx: &mut Cx<'_>, h: Head) {
        let at = self.reader.consumed.saturating_sub(1);
        let timed_out = timed_out_mid_head(cx, self.stall_start, self.plan.stream_idle, h.status);
        if cx.delivered_when_written(at) < self.head_len && !timed_out {
            cx.violation(format!(
                "CONNECT {:#x}: the proxy answered {} before the request head reached it ({} of {} bytes)",
                self.plan.id,
                h.status,
                cx.delivered_when_written(at),
                self.head_len
            ));
        }
        if self.status.is_some() {
            cx.violation(format!("CONNECT {:#x}: a second answer ({})", self.plan.id, h.status));
        }
        self.status = Some(h.status);
        if (200..300).contains(&h.status) {
            if h.status != 200 {
                cx.violation(format!("CONNECT {:#x}: {} instead of 200", self.plan.id, h.status));
            }
            cx.ledger.tunnel(self.plan.id).opened = true;
            let side = self.side();
            let sent_early = self.plan.early.min(side.stop_at());
            if !(self.plan.early >= side.stop_at() || self.plan.fin_early) {
                side.queue_rest(&mut self.out, sent_early);
            }
            self.tunnel = Some(side);
            self.run(cx);
        } else {
            cx.tally.local_reply(h.status);
            if self.plan.calm {
                cx.violation(format!(
                    "CONNECT {:#x}: answered {} in a run without faults",
                    self.plan.id, h.status
                ));
            }
            if !matches!(h.status, 403 | 404 | 503 | 400 | 413 | 431) && !timed_out {
                cx.violation(format!("CONNECT {:#x}: unexpected status {}", self.plan.id, h.status));
            }
        }
    }
}
