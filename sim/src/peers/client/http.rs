//! The HTTP/1.1 client: requests with bodies, pipelining, `Expect: 100-continue`, upgrades.

use std::collections::VecDeque;
use std::time::Duration;

use super::{stall_check, timed_out_mid_head, Ending, TunnelSide, STALL_END, STALL_START};
use crate::http::{chunk, preview, Event, Head, Reader};
use crate::ledger::End;
use crate::peer::{Cx, Peer};
use crate::peers::{stream, Done, Item, Outbox, REQ_BODY, RESP_BODY};
use crate::rng::{payload, payload_mismatch, Rng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPlan {
    None,
    Length(u64),
    /// Total length, in this many chunks.
    Chunked(u64, u32),
}

impl BodyPlan {
    pub fn len(self) -> u64 {
        match self {
            BodyPlan::None => 0,
            BodyPlan::Length(n) | BodyPlan::Chunked(n, _) => n,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// One request of an HTTP client.
#[derive(Clone, Debug)]
pub struct ReqPlan {
    pub rid: u64,
    pub method: &'static str,
    pub path: String,
    pub host: String,
    pub body: BodyPlan,
    pub expect_continue: bool,
    /// `connection: close`.
    pub close: bool,
    /// An upgrade (`websocket`): the tunnel's payload length, early stream bytes, ending.
    pub upgrade: Option<(u64, u64, Ending)>,
    /// Reset after this many bytes of the request.
    pub reset_at: Option<u64>,
    /// Stall this long after this many bytes of the head.
    pub stall: Option<(usize, Duration)>,
    /// Wait this long before sending (after the previous response).
    pub think: Duration,
}

#[derive(Clone, Debug)]
pub struct HttpPlan {
    pub cid: u64,
    pub requests: Vec<ReqPlan>,
    /// Send every request at once, without waiting for responses.
    pub pipeline: bool,
    /// Half-close right after the last request is sent.
    pub half_close_after_last: bool,
    /// Idle this long after the last response before closing.
    pub linger: Duration,
    pub pace: Option<(usize, u64)>,
    pub calm: bool,
    /// The proxy's stream idle timeout (`None`: disabled), for the stall check.
    pub stream_idle: Option<Duration>,
}

#[derive(Debug)]
struct Inflight {
    rid: u64,
    head_end: u64,
    upgrade: Option<(u64, u64, Ending)>,
    /// Body held until a `100 Continue` (or a second) comes.
    held_body: Option<Vec<Item>>,
    expect_continue: bool,
    got_continue: bool,
    /// The request was cut short by our own reset.
    aborted: bool,
}

#[derive(Debug)]
struct Resp {
    rid: u64,
    status: u16,
    from_origin: bool,
    body: u64,
    close: bool,
}

const CONTINUE_WAIT: u64 = 1;
const NEXT: u64 = 2;
const LINGER: u64 = 3;

/// An HTTP/1.1 client on one connection.
pub struct HttpClient {
    plan: HttpPlan,
    rng: Rng,
    todo: VecDeque<ReqPlan>,
    inflight: VecDeque<Inflight>,
    reader: Reader,
    out: Outbox,
    cur: Option<Resp>,
    expect_eof: bool,
    tunnel: Option<TunnelSide>,
    /// The tunnel an upgrade request will open on a 101.
    pending_tunnel: Option<TunnelSide>,
    eof: bool,
    reset: bool,
    self_reset: bool,
    fin: bool,
    refused: bool,
    answered: u32,
    stall_start: Option<Duration>,
    /// Offset of a stall in progress, until its end: the stall counts only once the requests
    /// before it are answered (the proxy starts a pipelined request's stream, and its idle
    /// timeout, when the one before it ends, as Envoy does).
    stall_at: Option<u64>,
}

impl HttpClient {
    pub fn new(plan: HttpPlan, rng: Rng) -> HttpClient {
        let out = Outbox::new(plan.pace);
        HttpClient {
            todo: plan.requests.iter().cloned().collect(),
            plan,
            rng,
            inflight: VecDeque::new(),
            reader: Reader::responses(),
            out,
            cur: None,
            expect_eof: false,
            tunnel: None,
            pending_tunnel: None,
            eof: false,
            reset: false,
            self_reset: false,
            fin: false,
            refused: false,
            answered: 0,
            stall_start: None,
            stall_at: None,
        }
    }

    /// Requests before offset `at` still wait for (the end of) their responses.
    fn answers_pending_before(&self, at: u64) -> bool {
        self.inflight.iter().any(|r| r.head_end <= at)
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.after(cx, done);
    }

    fn after(&mut self, cx: &mut Cx<'_>, done: Vec<Done>) {
        if let Some(t) = self.tunnel.as_ref().or(self.pending_tunnel.as_ref()) {
            t.record(cx, &done, self.out.written);
        }
        for d in done {
            match d {
                Done::Mark(STALL_START) => {
                    let at = self.out.written;
                    self.stall_at = Some(at);
                    self.stall_start = (!self.answers_pending_before(at)).then_some(cx.now);
                }
                Done::Mark(STALL_END) => {
                    let ended = self.eof || self.reset;
                    self.stall_at = None;
                    stall_check(cx, self.stall_start.take(), self.plan.stream_idle, ended);
                }
                Done::Mark(rid) => cx.ledger.request(rid).sent_complete = true,
                Done::Fin => self.fin = true,
                Done::Close => {
                    self.fin = true;
                    self.self_reset = true;
                    cx.tally.fault("client-closes");
                }
                Done::Reset => {
                    self.self_reset = true;
                    cx.tally.fault("client-reset");
                    for r in &mut self.inflight {
                        r.aborted = true;
                    }
                }
                Done::Wrote(_) => {}
            }
        }
    }

    /// Queues the next request.
    fn send_next(&mut self, cx: &mut Cx<'_>) {
        let Some(r) = self.todo.pop_front() else { return };
        let last = self.todo.is_empty();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\nx-sim-id: {}\r\nx-sim-len: {}\r\n",
            r.method,
            r.path,
            r.host,
            r.rid,
            r.body.len()
        );
        match r.body {
            BodyPlan::None => {}
            BodyPlan::Length(n) => head.push_str(&format!("content-length: {n}\r\n")),
            BodyPlan::Chunked(..) => head.push_str("transfer-encoding: chunked\r\n"),
        }
        if r.expect_continue && !r.body.is_empty() {
            head.push_str("expect: 100-continue\r\n");
        }
        if r.upgrade.is_some() {
            head.push_str("connection: upgrade\r\nupgrade: websocket\r\n");
        } else if r.close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let head = head.into_bytes();
        let rec = cx.ledger.request(r.rid);
        rec.body_len = r.body.len();
        rec.upgrade = r.upgrade.is_some();
        let start = self.out.queued;
        let head_end = start + head.len() as u64;
        cx.head_end(head_end);
        self.reader.methods.push_back(r.method.to_string());

        // The whole request as items, then cut where a reset or stall is planned.
        let mut body_items = Vec::new();
        match r.body {
            BodyPlan::None => {}
            BodyPlan::Length(n) => body_items.push(payload(r.rid ^ REQ_BODY, 0, n as usize)),
            BodyPlan::Chunked(n, pieces) => {
                let mut at = 0u64;
                for i in 0..pieces.max(1) {
                    let left = n - at;
                    let size = if i + 1 == pieces.max(1) { left } else { self.rng.range(0, left) };
                    if size > 0 {
                        body_items.push(chunk(&payload(r.rid ^ REQ_BODY, at, size as usize)));
                    }
                    at += size;
                }
                body_items.push(b"0\r\n\r\n".to_vec());
            }
        }
        let mut upgrade_side = None;
        if let Some((len, early, ending)) = r.upgrade {
            let side = TunnelSide { id: r.rid, len, banner: 0, base: head_end, got: 0, ending };
            let stop = early.min(side.stop_at());
            if stop > 0 {
                body_items.push(stream(r.rid, len, 0, stop));
            }
            cx.ledger.tunnel(r.rid).upgrade = true;
            upgrade_side = Some(side);
        }
        let mut items = Vec::new();
        match r.stall {
            Some((at, pause)) if at > 0 && at < head.len() => {
                cx.tally.fault("client-stalls-in-head");
                items.push(Item::Data(head[..at].to_vec()));
                items.push(Item::Mark(STALL_START));
                items.push(Item::Pause(pause));
                items.push(Item::Mark(STALL_END));
                items.push(Item::Data(head[at..].to_vec()));
            }
            _ => items.push(Item::Data(head)),
        }
        let mut body: Vec<Item> = body_items.into_iter().map(Item::Data).collect();
        body.push(Item::Mark(r.rid));
        let wait_continue = r.expect_continue && !r.body.is_empty() && !self.plan.pipeline;
        let mut inflight = Inflight {
            rid: r.rid,
            head_end,
            upgrade: r.upgrade,
            held_body: None,
            expect_continue: r.expect_continue && !r.body.is_empty(),
            got_continue: false,
            aborted: false,
        };
        if wait_continue {
            inflight.held_body = Some(body);
            cx.timer(Duration::from_secs(1), CONTINUE_WAIT);
        } else {
            items.extend(body);
        }
        // A planned reset cuts the request at a byte offset.
        if let Some(cut) = r.reset_at {
            let mut kept = Vec::new();
            let mut left = cut;
            for item in items {
                match item {
                    Item::Data(mut d) if left < d.len() as u64 => {
                        d.truncate(left as usize);
                        kept.push(Item::Data(d));
                        kept.push(Item::Reset);
                        break;
                    }
                    Item::Data(d) => {
                        left -= d.len() as u64;
                        kept.push(Item::Data(d));
                    }
                    other => kept.push(other),
                }
            }
            if !kept.iter().any(|i| matches!(i, Item::Reset)) {
                kept.push(Item::Reset);
            }
            items = kept;
        }
        for item in items {
            self.out.push(item);
        }
        if let Some(mut side) = upgrade_side {
            side.base = head_end;
            self.pending_tunnel = Some(side);
        }
        if self.pending_tunnel.as_ref().is_some_and(|t| t.id != r.rid) {
            self.pending_tunnel = None;
        }
        self.inflight.push_back(inflight);
        if last
            && self.plan.half_close_after_last
            && r.upgrade.is_none()
            && !wait_continue
            && r.reset_at.is_none()
        {
            self.out.push(Item::Fin);
        }
        self.run(cx);
        if self.plan.pipeline && !self.todo.is_empty() {
            self.send_next(cx);
        }
    }

    fn on_head(&mut self, cx: &mut Cx<'_>, h: Head) {
        let Some(front) = self.inflight.front_mut() else {
            cx.violation(format!(
                "client {:#x}: a {} response with no request outstanding",
                self.plan.cid, h.status
            ));
            return;
        };
        let at = self.reader.consumed.saturating_sub(1);
        let delivered = cx.delivered_when_written(at);
        // The stream idle timeout (408) may also end a request the proxy stopped reading
        // while it waited for a pooled connection.
        let timed_out = timed_out_mid_head(cx, self.stall_start, self.plan.stream_idle, h.status)
            || (h.status == 408 && self.plan.stream_idle.is_some());
        if delivered < front.head_end && !timed_out {
            cx.violation(format!(
                "request {:#x}: the proxy wrote a {} response when only {delivered} of the {} bytes up to its head had reached it",
                front.rid, h.status, front.head_end
            ));
        }
        if (100..200).contains(&h.status) && h.status != 101 {
            if h.status != 100 || !front.expect_continue {
                cx.violation(format!("request {:#x}: unexpected interim {}", front.rid, h.status));
            }
            front.got_continue = true;
            if let Some(body) = front.held_body.take() {
                for item in body {
                    self.out.push(item);
                }
                self.run(cx);
            }
            return;
        }
        let rid = front.rid;
        let sim_id = h.get_u64("x-sim-id");
        let from_origin = sim_id.is_some();
        if let Some(id) = sim_id {
            if id != rid {
                cx.violation(format!("request {rid:#x}: got the response to request {id:#x}"));
            }
        } else {
            cx.tally.local_reply(h.status);
            if self.plan.calm {
                let what = format!("request {rid:#x}: local reply {} in a run without faults", h.status);
                if matches!(h.status, 408 | 504) {
                    cx.notes.consequence(cx.now, what);
                } else {
                    cx.violation(what);
                }
            }
            if h.status < 400 {
                cx.violation(format!("request {rid:#x}: a {} local reply", h.status));
            }
        }
        if from_origin {
            cx.tally.origin_responses += 1;
        }
        // A final response before the body went: the body is never sent.
        if front.held_body.take().is_some() {
            cx.ledger.request(rid).sent_complete = false;
        }
        let close = h.has_token("connection", "close");
        if front.upgrade.is_some() && h.status == 101 {
            if !from_origin {
                cx.violation(format!("request {rid:#x}: a 101 the origin did not send"));
            }
            cx.ledger.tunnel(rid).opened = true;
        }
        self.cur = Some(Resp { rid, status: h.status, from_origin, body: 0, close });
    }

    fn on_body(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        let Some(cur) = &mut self.cur else { return };
        if cur.from_origin {
            if let Some(at) = payload_mismatch(cur.rid ^ RESP_BODY, cur.body, data) {
                cx.violation(format!(
                    "request {:#x}: wrong response body byte at offset {}: {}",
                    cur.rid,
                    cur.body + at as u64,
                    preview(&data[at..])
                ));
            }
        }
        cur.body += data.len() as u64;
    }

    fn on_end(&mut self, cx: &mut Cx<'_>) {
        let Some(cur) = self.cur.take() else { return };
        let front = self.inflight.pop_front().expect("a response for a request");
        self.answered += 1;
        if let Some(at) = self.stall_at {
            if self.stall_start.is_none() && !self.answers_pending_before(at) {
                // The request stalled mid-head is the proxy's to time from here.
                self.stall_start = Some(cx.now);
            }
        }
        let rec = cx.ledger.request(cur.rid);
        rec.response = Some((cur.status, cur.from_origin));
        rec.response_body = cur.body;
        if let (Some((len, early, ending)), 101) = (front.upgrade, cur.status) {
            let mut side = self.pending_tunnel.take().unwrap_or(TunnelSide {
                id: cur.rid,
                len,
                banner: 0,
                base: front.head_end,
                got: 0,
                ending,
            });
            side.base = front.head_end;
            let stop = early.min(side.stop_at());
            side.queue_rest(&mut self.out, stop);
            self.tunnel = Some(side);
            self.todo.clear();
            self.run(cx);
            let rest = self.reader.take_raw();
            if !rest.is_empty() {
                self.tunnel.as_mut().unwrap().verify(cx, &rest);
            }
            return;
        }
        if front.upgrade.is_some() {
            // A refused upgrade ends the connection.
            self.pending_tunnel = None;
            self.expect_eof = true;
        }
        if cur.close {
            self.expect_eof = true;
        }
        if self.expect_eof {
            self.todo.clear();
            return;
        }
        if !self.todo.is_empty() {
            if !self.plan.pipeline {
                let think = self.todo.front().map_or(Duration::ZERO, |r| r.think);
                cx.timer(think, NEXT);
            }
        } else if self.inflight.is_empty() {
            cx.timer(self.plan.linger, LINGER);
        }
    }
}

impl Peer for HttpClient {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        self.send_next(cx);
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.reset || self.self_reset {
            return;
        }
        if let Some(t) = &mut self.tunnel {
            t.verify(cx, data);
            return;
        }
        if self.expect_eof && self.cur.is_none() && self.reader.idle() {
            cx.violation(format!(
                "client {:#x}: bytes after a response that closes the connection: {}",
                self.plan.cid,
                preview(data)
            ));
            return;
        }
        let mut events = Vec::new();
        let result = self.reader.feed(data, &mut events);
        for ev in events {
            match ev {
                Event::Head(h) => self.on_head(cx, h),
                Event::Body(b) => self.on_body(cx, &b),
                Event::End => self.on_end(cx),
            }
            if self.tunnel.is_some() {
                break;
            }
        }
        if let Err(e) = result {
            cx.violation(format!("client {:#x}: unparsable response: {e}", self.plan.cid));
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.eof = true;
        if let Some(t) = &self.tunnel {
            // An upgraded connection ends with its upstream (no half-close is passed on): the
            // proxy has closed it, so stop sending.
            cx.ledger.tunnel(t.id).client_end = Some(cx.eof_end());
            self.out.stop();
            if !self.fin && !self.self_reset {
                cx.close();
                self.fin = true;
            }
            return;
        }
        let mut events = Vec::new();
        let _ = self.reader.eof(&mut events);
        for ev in events {
            if let Event::End = ev {
                self.on_end(cx);
            }
        }
        self.cut(cx, cx.eof_end());
        self.out.stop();
        if !self.fin && !self.self_reset {
            cx.close();
            self.fin = true;
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        self.reset = true;
        self.out.stop();
        if let Some(t) = &self.tunnel {
            cx.ledger.tunnel(t.id).client_end = Some(End::Reset);
        }
        self.cut(cx, End::Reset);
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, token: u64) {
        if self.reset || self.self_reset || self.eof {
            return;
        }
        match token {
            crate::peers::PACE => {
                let done = self.out.on_timer(cx, &mut self.rng);
                self.after(cx, done);
            }
            CONTINUE_WAIT => {
                if let Some(front) = self.inflight.back_mut() {
                    if let Some(body) = front.held_body.take() {
                        for item in body {
                            self.out.push(item);
                        }
                        self.run(cx);
                    }
                }
            }
            NEXT if self.inflight.is_empty() && !self.expect_eof => self.send_next(cx),
            LINGER if self.inflight.is_empty() && self.todo.is_empty() && !self.fin => {
                self.out.push(Item::Fin);
                self.run(cx);
            }
            _ => {}
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

    fn sends_request(&self, rid: u64) -> bool {
        self.plan.requests.iter().any(|r| r.rid == rid)
    }

    fn describe(&self) -> String {
        format!(
            "HTTP client {:#x}: {} requests, {} answered, inflight {:?}, todo {}, cur {:?}, tunnel {:?}, eof={} fin={} reset={} self_reset={} expect_eof={} written={}/{}",
            self.plan.cid,
            self.plan.requests.len(),
            self.answered,
            self.inflight.iter().map(|r| r.rid).collect::<Vec<_>>(),
            self.todo.len(),
            self.cur,
            self.tunnel.as_ref().map(|t| (t.id, t.got)),
            self.eof,
            self.fin,
            self.reset,
            self.self_reset,
            self.expect_eof,
            self.out.written,
            self.out.queued
        )
    }
}

impl HttpClient {
    /// The connection ended: every request without a complete response was cut.
    fn cut(&mut self, cx: &mut Cx<'_>, end: End) {
        if let Some(cur) = self.cur.take() {
            cx.ledger.request(cur.rid).cut = Some(end);
            self.inflight.retain(|r| r.rid != cur.rid);
        }
        for r in self.inflight.drain(..) {
            cx.ledger.request(r.rid).cut = Some(end);
        }
    }
}
