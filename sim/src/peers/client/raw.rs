//! The raw TCP client of a TCP proxy listener: no request at all, its stream from the first
//! byte. It cannot see whether its tunnel opened (the upstream end records that in the
//! ledger), so it checks what comes back and how its connection ends.

use std::time::Duration;

use super::{Ending, TunnelSide};
use crate::ledger::End;
use crate::peer::{Cx, Peer};
use crate::peers::{Done, Item, Outbox, BANNER};
use crate::report::Finding;
use crate::rng::Rng;

/// What a raw client does.
#[derive(Clone, Debug)]
pub struct RawPlan {
    pub id: u64,
    pub payload: u64,
    pub ending: Ending,
    /// The upstream writes a banner first.
    pub banner: bool,
    /// Sends nothing before the whole banner has arrived (a server-speaks-first protocol).
    pub wait_banner: bool,
    /// Waits this long after connecting before its first byte.
    pub think: Duration,
    pub pace: Option<(usize, u64)>,
    /// Its listener's `max_connect_attempts`.
    pub max_attempts: u32,
}

/// A client that pushes a stream through a TCP proxy listener and checks the echo.
pub struct RawClient {
    plan: RawPlan,
    rng: Rng,
    out: Outbox,
    side: TunnelSide,
    started: bool,
    eof: bool,
    /// Bytes of this connection the proxy had read when its FIN arrived, and whether a timer
    /// closed it.
    eof_delivered: Option<u64>,
    eof_by_timer: bool,
    reset: bool,
    fin: bool,
    self_reset: bool,
    refused: bool,
}

impl RawClient {
    pub fn new(plan: RawPlan, rng: Rng) -> RawClient {
        let side = TunnelSide {
            id: plan.id,
            len: plan.payload,
            banner: if plan.banner { BANNER.len() as u64 } else { 0 },
            base: 0,
            got: 0,
            ending: plan.ending,
        };
        RawClient {
            out: Outbox::new(plan.pace),
            plan,
            rng,
            side,
            started: false,
            eof: false,
            eof_delivered: None,
            eof_by_timer: false,
            reset: false,
            fin: false,
            self_reset: false,
            refused: false,
        }
    }

    fn start(&mut self, cx: &mut Cx<'_>) {
        self.started = true;
        if !self.plan.think.is_zero() {
            self.out.push(Item::Pause(self.plan.think));
        }
        self.side.queue_rest(&mut self.out, 0);
        self.run(cx);
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.after(cx, done);
    }

    fn after(&mut self, cx: &mut Cx<'_>, done: Vec<Done>) {
        self.side.record(cx, &done, self.out.written);
        for d in done {
            match d {
                Done::Fin => self.fin = true,
                Done::Close => {
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

impl Peer for RawClient {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        let t = cx.ledger.tunnel(self.plan.id);
        t.raw = true;
        t.max_attempts = self.plan.max_attempts;
        if !(self.plan.wait_banner && self.plan.banner) {
            self.start(cx);
        }
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.reset || self.self_reset {
            return;
        }
        self.side.verify(cx, data);
        if !self.started && self.side.got >= self.side.banner {
            self.start(cx);
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.eof = true;
        self.eof_delivered = Some(cx.delivered);
        self.eof_by_timer = cx.by_timer;
        let end = cx.eof_end();
        let t = cx.ledger.tunnel(self.plan.id);
        t.client_end = Some(end);
        if !t.opened {
            // No tunnel: the proxy gave up on it, and there is nothing more to say.
            self.out.stop();
            if !self.fin && !self.self_reset {
                cx.close();
                self.fin = true;
            }
        } else if !self.started {
            // The upstream half-closed before its whole banner: the client has its say anyway.
            self.start(cx);
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        self.reset = true;
        self.out.stop();
        cx.ledger.tunnel(self.plan.id).client_end = Some(End::Reset);
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

    fn finish(&mut self, cx: &mut Cx<'_>) {
        // Given up (no attempt went through): a client whose bytes the proxy read and sent
        // nowhere is reset, so that it cannot take the close for a clean end.
        let opened = cx.ledger.tunnel(self.plan.id).opened;
        if let (Some(read @ 1..), false, false) = (self.eof_delivered, opened, self.reset) {
            let what = format!(
                "tunnel {:#x}: no upstream took it, and the proxy closed the client cleanly (FIN{}) after reading {read} of its bytes",
                self.plan.id,
                if self.eof_by_timer { ", at a timeout" } else { "" }
            );
            match self.eof_by_timer {
                true => cx.notes.signature(cx.now, Finding::DurationLimitClosesHeldBytesCleanly, what),
                false => cx.violation(what),
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "raw client {:#x}: got {} written={}/{} started={} eof={} fin={} reset={} self_reset={} outbox_empty={}",
            self.plan.id,
            self.side.got,
            self.out.written,
            self.out.queued,
            self.started,
            self.eof,
            self.fin,
            self.reset,
            self.self_reset,
            self.out.is_empty()
        )
    }
}
