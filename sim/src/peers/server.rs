//! Upstream peers: a TCP echo target and an HTTP/1.1 origin (content-length, chunked or
//! until-close bodies, keep-alive or close, 101 for upgrades, slow or dying).

use std::time::Duration;

use super::{parse_header, stream_byte, Done, Item, Outbox, BANNER, HEADER, REQ_BODY, RESP_BODY};
use crate::http::{chunk, preview, Event, Head, Reader};
use crate::ledger::End;
use crate::peer::{Cx, Peer};
use crate::rng::{payload, payload_mismatch, Rng};

/// How an echo target treats a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoMode {
    /// Echo everything; half-close when the client does.
    Echo,
    /// Half-close after receiving this many bytes, echoing no more (still reading).
    FinAfter(u64),
    /// Reset after receiving this many bytes.
    ResetAfter(u64),
    /// Close both ways after receiving this many bytes.
    CloseAfter(u64),
}

/// The target half of a tunnel: checks the stream, echoes it.
#[derive(Debug)]
pub(super) struct Echo {
    mode: EchoMode,
    header: Vec<u8>,
    pub(super) id: Option<(u64, u64)>,
    /// The tunnel this connection carries, when the target knows it before the stream's
    /// header (a terminator, from the tunnel request): the header must name it.
    expect: Option<u64>,
    got: u64,
    /// Bytes written before the id was known (the banner).
    early_sent: u64,
    sent: u64,
    echoing: bool,
    fin: bool,
    ended: bool,
}

impl Echo {
    pub(super) fn new(mode: EchoMode, expect: Option<u64>) -> Echo {
        Echo {
            mode,
            header: Vec::new(),
            id: None,
            expect,
            got: 0,
            early_sent: 0,
            sent: 0,
            echoing: true,
            fin: false,
            ended: false,
        }
    }

    pub(super) fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8], out: &mut Outbox) {
        if self.ended {
            return;
        }
        if self.id.is_none() {
            let need = (HEADER as usize - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..need]);
            if self.header.len() == HEADER as usize {
                match parse_header(&self.header) {
                    Some(id) => {
                        if let Some(want) = self.expect.filter(|want| *want != id.0) {
                            cx.violation(format!(
                                "tunnel {:#x}: its stream reached the terminator that answered tunnel {want:#x}",
                                id.0
                            ));
                        }
                        self.id = Some(id);
                        let t = cx.ledger.tunnel(id.0);
                        t.target_seen = true;
                        t.target_conns += 1;
                        t.target_sent += self.early_sent;
                    }
                    None => {
                        cx.violation(format!(
                            "target got a stream without a tunnel header: {}",
                            preview(&self.header)
                        ));
                        self.ended = true;
                        return;
                    }
                }
            } else if self.header[..self.header.len().min(4)] != super::MAGIC[..self.header.len().min(4)] {
                cx.violation(format!(
                    "target got a stream without a tunnel header: {}",
                    preview(&self.header)
                ));
                self.ended = true;
                return;
            }
        }
        if let Some((id, len)) = self.id {
            for (i, b) in data.iter().enumerate() {
                let k = self.got + i as u64;
                let want = stream_byte(id, len, k);
                if *b != want {
                    cx.violation(format!(
                        "tunnel {id:#x}: target got a wrong byte at offset {k} (got {b:#04x}, want {want:#04x}): {}",
                        preview(&data[i..])
                    ));
                    break;
                }
            }
            cx.ledger.tunnel(id).target_got = self.got + data.len() as u64;
        }
        self.got += data.len() as u64;
        if self.echoing {
            out.push(Item::Data(data.to_vec()));
        }
        match self.mode {
            EchoMode::FinAfter(n) if self.got >= n && self.echoing => {
                cx.tally.fault("target-half-closes-early");
                self.echoing = false;
                out.push(Item::Fin);
            }
            EchoMode::ResetAfter(n) if self.got >= n => {
                out.push(Item::Reset);
                self.ended = true;
            }
            EchoMode::CloseAfter(n) if self.got >= n && self.echoing => {
                self.echoing = false;
                out.push(Item::Close);
                self.ended = true;
            }
            _ => {}
        }
    }

    /// Ledger bookkeeping for what the outbox did.
    pub(super) fn record(&mut self, cx: &mut Cx<'_>, done: &[Done]) {
        for d in done {
            match d {
                Done::Wrote(n) => {
                    self.sent += *n as u64;
                    match self.id {
                        Some((id, _)) => cx.ledger.tunnel(id).target_sent += *n as u64,
                        None => self.early_sent += *n as u64,
                    }
                }
                Done::Fin => {
                    self.fin = true;
                    if let Some((id, _)) = self.id {
                        cx.ledger.tunnel(id).target_fin = true;
                    }
                }
                Done::Close => {
                    // Closing with bytes still coming is as good as a reset.
                    self.fin = true;
                    cx.tally.fault("target-closes");
                    if let Some((id, _)) = self.id {
                        let t = cx.ledger.tunnel(id);
                        t.target_fin = true;
                        t.target_reset = true;
                    }
                }
                Done::Reset => {
                    cx.tally.fault("target-reset");
                    if let Some((id, _)) = self.id {
                        cx.ledger.tunnel(id).target_reset = true;
                    }
                }
                Done::Mark(_) => {}
            }
        }
    }

    pub(super) fn on_eof(&mut self, cx: &mut Cx<'_>, out: &mut Outbox) {
        match (self.id, self.expect.or(cx.tunnel_hint)) {
            (Some((id, _)), _) => cx.ledger.tunnel(id).target_end = Some(cx.eof_end()),
            // The stream ended before its header was whole: report it for the client this
            // connection was opened for.
            (None, Some(id)) if !self.ended => {
                let end = cx.eof_end();
                let t = cx.ledger.tunnel(id);
                t.target_got = self.got;
                t.target_end = Some(end);
            }
            _ => {}
        }
        if !self.fin && !self.ended {
            out.push(Item::Fin);
        }
        self.ended = true;
    }

    pub(super) fn on_reset(&mut self, cx: &mut Cx<'_>) {
        match (self.id, self.expect) {
            (Some((id, _)), _) | (None, Some(id)) => cx.ledger.tunnel(id).target_end = Some(End::Reset),
            _ => {}
        }
        self.ended = true;
    }
}

/// A TCP target that echoes what it gets (optionally after a banner).
pub struct EchoTarget {
    rng: Rng,
    echo: Echo,
    out: Outbox,
    banner: bool,
}

impl EchoTarget {
    pub fn new(mut rng: Rng, mode: EchoMode, banner: bool, slow_write: u32) -> EchoTarget {
        let out = Outbox::new(super::pace(&mut rng, slow_write));
        EchoTarget { rng, echo: Echo::new(mode, None), out, banner }
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.echo.record(cx, &done);
    }
}

impl Peer for EchoTarget {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        // A raw client of a TCP proxy cannot see its tunnel open: it is open once the proxy
        // has been told its connection to this target is up, which is now.
        if let Some(id) = cx.tunnel_hint {
            let t = cx.ledger.tunnel(id);
            t.opened |= t.raw;
        }
        if self.banner {
            self.out.push(Item::Data(BANNER.to_vec()));
        }
        if let EchoMode::FinAfter(0) = self.echo.mode {
            self.echo.echoing = false;
            self.out.push(Item::Fin);
        }
        self.run(cx);
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.echo.on_data(cx, data, &mut self.out);
        self.run(cx);
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.echo.on_eof(cx, &mut self.out);
        self.run(cx);
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        self.echo.on_reset(cx);
        self.out.stop();
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, token: u64) {
        if token == super::PACE {
            let done = self.out.on_timer(cx, &mut self.rng);
            self.echo.record(cx, &done);
        }
    }

    fn done(&self) -> bool {
        true
    }

    fn is_client(&self) -> bool {
        false
    }

    fn serving_tunnel(&self) -> Option<u64> {
        Some(self.echo.id.map_or(u64::MAX, |(id, _)| id))
    }

    fn describe(&self) -> String {
        format!(
            "echo target {:?}: got {} sent {} mode {:?} fin {} ended {}",
            self.echo.id.map(|(id, _)| id),
            self.echo.got,
            self.echo.sent,
            self.echo.mode,
            self.echo.fin,
            self.echo.ended
        )
    }
}

// ---- HTTP/1.1 origin ---------------------------------------------------------------------

/// How an origin behaves (per-mille chances per request unless noted).
#[derive(Clone, Debug, Default)]
pub struct OriginProfile {
    pub reset_before: u32,
    pub reset_mid: u32,
    /// FIN in the middle of a content-length or chunked body.
    pub fin_mid: u32,
    /// Wait 5 s to 10 min before answering.
    pub stall: u32,
    pub garbage: u32,
    /// Answer as soon as the head arrives, without reading the body, then close.
    pub early_response: u32,
    /// `connection: close` on the response.
    pub close: u32,
    pub until_close: u32,
    pub chunked: u32,
    pub refuse_upgrade: u32,
    pub slow_write: u32,
    pub max_body: u64,
    /// Delay before answering, microseconds.
    pub think_us: (u64, u64),
    /// Close a keep-alive connection idle for this long (milliseconds).
    pub idle_close_ms: Option<(u64, u64)>,
    /// What tunnels opened by an upgrade do.
    pub echo_faults: u32,
}

#[derive(Debug)]
struct Cur {
    rid: u64,
    got: u64,
    upgrade: bool,
    complete: bool,
    /// Answered already (early response): the rest of the request is ignored.
    answered: bool,
}

const RESPOND: u64 = 1;
const IDLE: u64 = 1 << 32;
/// Marks in the outbox: progress of a response body (`BODY | offset`) and its end.
const BODY: u64 = 1 << 62;
const DONE: u64 = 1 << 61;
/// The 101's head is written: what follows is the tunnel.
const TUNNEL: u64 = 1 << 60;

/// An HTTP/1.1 origin on one connection.
pub struct HttpOrigin {
    rng: Rng,
    p: OriginProfile,
    reader: Reader,
    out: Outbox,
    cur: Option<Cur>,
    /// The response being written, as (rid, until_close).
    responding: Option<(u64, bool)>,
    tunnel: Option<Echo>,
    tunnel_started: bool,
    closed: bool,
    idle_gen: u64,
    requests: u32,
}

impl HttpOrigin {
    pub fn new(mut rng: Rng, p: OriginProfile) -> HttpOrigin {
        let out = Outbox::new(super::pace(&mut rng, p.slow_write));
        HttpOrigin {
            rng,
            p,
            reader: Reader::requests(),
            out,
            cur: None,
            responding: None,
            tunnel: None,
            tunnel_started: false,
            closed: false,
            idle_gen: 0,
            requests: 0,
        }
    }

    fn run(&mut self, cx: &mut Cx<'_>) {
        let done = self.out.run(cx, &mut self.rng);
        self.after(cx, done);
    }

    fn after(&mut self, cx: &mut Cx<'_>, done: Vec<Done>) {
        if let Some(echo) = &mut self.tunnel {
            // Tunnel bytes are those written after the 101's head.
            let from = if self.tunnel_started {
                0
            } else {
                match done.iter().position(|d| *d == Done::Mark(TUNNEL)) {
                    Some(at) => {
                        self.tunnel_started = true;
                        at + 1
                    }
                    None => done.len(),
                }
            };
            echo.record(cx, &done[from..]);
        }
        for d in done {
            match d {
                Done::Mark(m) if m & BODY != 0 => {
                    if let Some((rid, _)) = self.responding {
                        cx.ledger.request(rid).origin_sent = m & !BODY;
                    }
                }
                Done::Mark(m) if m & DONE != 0 => {
                    if let Some((rid, until_close)) = self.responding {
                        if !until_close {
                            cx.ledger.request(rid).origin_done = true;
                            self.responding = None;
                            self.idle(cx);
                        }
                    }
                }
                Done::Close => {
                    self.closed = true;
                    // An until-close body ends here; any other response was cut short.
                    if let Some((rid, true)) = self.responding.take() {
                        cx.ledger.request(rid).origin_done = true;
                    }
                    // Closing with request bytes still coming is as good as a reset: the
                    // proxy's next write fails and what it had not read yet is lost.
                    if let Some(cur) = &self.cur {
                        if !cur.complete {
                            cx.ledger.request(cur.rid).origin_reset = true;
                        }
                    }
                }
                Done::Reset => {
                    self.closed = true;
                    cx.tally.fault("origin-reset");
                    if let Some((rid, _)) = self.responding.take() {
                        cx.ledger.request(rid).origin_reset = true;
                    }
                    if let Some(cur) = &self.cur {
                        cx.ledger.request(cur.rid).origin_reset = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// Between requests: arm the keep-alive idle close.
    fn idle(&mut self, cx: &mut Cx<'_>) {
        self.idle_gen += 1;
        if let Some((lo, hi)) = self.p.idle_close_ms {
            cx.timer(Duration::from_millis(self.rng.range(lo, hi)), IDLE | self.idle_gen);
        }
    }

    fn on_head(&mut self, cx: &mut Cx<'_>, h: Head) {
        self.idle_gen += 1;
        if self.responding.is_some() || self.cur.as_ref().is_some_and(|c| !c.answered) {
            cx.violation(format!(
                "origin: a second request ({} {}) on an HTTP/1.1 connection before the first was answered (responding {:?}, cur {:?})",
                h.method, h.target, self.responding, self.cur
            ));
        }
        let Some(rid) = h.get_u64("x-sim-id") else {
            cx.violation(format!("origin: a request without x-sim-id: {} {}", h.method, h.target));
            self.cur = None;
            return;
        };
        self.requests += 1;
        cx.ledger.request(rid).origin_heads += 1;
        if h.get("expect").is_some() {
            cx.violation(format!("request {rid:#x}: Expect reached the origin"));
        }
        let upgrade = h.has_token("connection", "upgrade") && h.get("upgrade").is_some();
        self.cur = Some(Cur { rid, got: 0, upgrade, complete: false, answered: false });
        let has_body =
            h.get("content-length").is_some_and(|v| v != b"0") || h.get("transfer-encoding").is_some();
        if has_body && !upgrade && self.rng.chance(self.p.early_response) {
            cx.tally.fault("origin-answers-early");
            self.cur.as_mut().unwrap().answered = true;
            self.respond(cx, rid, true);
        }
    }

    fn respond(&mut self, cx: &mut Cx<'_>, rid: u64, early: bool) {
        if self.closed {
            return;
        }
        let p = self.p.clone();
        if self.rng.chance(p.reset_before) {
            cx.ledger.request(rid).origin_reset = true;
            self.out.push(Item::Reset);
            self.run(cx);
            return;
        }
        if self.rng.chance(p.garbage) {
            cx.tally.fault("origin-garbage");
            self.out.push(Item::Data(b"HTTP/1.1 2x0 Bogus\r\nx-sim-id: \x01\r\n\r\n".to_vec()));
            self.out.push(Item::Close);
            self.run(cx);
            return;
        }
        let status = if early {
            413
        } else {
            *self.rng.pick(&[200, 200, 200, 200, 200, 200, 201, 204, 404, 500, 503])
        };
        let len = if status == 204 { 0 } else { self.rng.size(p.max_body as usize) as u64 };
        let until_close = status != 204 && self.rng.chance(p.until_close);
        let chunked = !until_close && status != 204 && self.rng.chance(p.chunked);
        let close = early || until_close || self.rng.chance(p.close);
        let mut head = format!("HTTP/1.1 {status} Sim\r\nx-sim-id: {rid}\r\nx-sim-len: {len}\r\n");
        if chunked {
            head.push_str("transfer-encoding: chunked\r\n");
        } else if !until_close && status != 204 {
            head.push_str(&format!("content-length: {len}\r\n"));
        }
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        {
            let rec = cx.ledger.request(rid);
            rec.origin_declared = len;
            rec.origin_sent = 0;
        }
        self.responding = Some((rid, until_close));
        self.out.push(Item::Data(head.into_bytes()));
        // Dying mid-response means before the last body byte (after it, the response is whole).
        let die = if len > 0 && self.rng.chance(p.reset_mid) {
            Some((self.rng.range(0, len - 1), true))
        } else if len > 0 && !until_close && self.rng.chance(p.fin_mid) {
            Some((self.rng.range(0, len - 1), false))
        } else {
            None
        };
        let mut at = 0u64;
        while at < len {
            let size = self.rng.range(1, (len - at).min(32 * 1024));
            let size = match die {
                Some((cut, _)) if at < cut && at + size > cut => cut - at,
                Some((cut, _)) if at >= cut => 0,
                _ => size,
            };
            if size == 0 {
                break;
            }
            let body = payload(rid ^ RESP_BODY, at, size as usize);
            self.out.push(Item::Data(if chunked { chunk(&body) } else { body }));
            at += size;
            self.out.push(Item::Mark(BODY | at));
        }
        match die {
            Some((_, true)) => {
                cx.tally.fault("origin-dies-mid-response");
                self.out.push(Item::Reset);
            }
            Some((_, false)) => {
                cx.tally.fault("origin-fin-mid-response");
                self.out.push(Item::Close);
            }
            None => {
                if chunked {
                    self.out.push(Item::Data(b"0\r\n\r\n".to_vec()));
                }
                if !until_close {
                    self.out.push(Item::Mark(DONE));
                }
                if close {
                    self.out.push(Item::Close);
                }
            }
        }
        self.run(cx);
    }

    fn upgrade(&mut self, cx: &mut Cx<'_>, rid: u64) {
        if self.rng.chance(self.p.refuse_upgrade) {
            cx.tally.fault("origin-refuses-upgrade");
            self.respond(cx, rid, false);
            // No bytes may follow a refused upgrade on this connection.
            return;
        }
        let head = format!("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-sim-id: {rid}\r\n\r\n");
        {
            let rec = cx.ledger.request(rid);
            rec.origin_declared = 0;
            rec.origin_done = true;
        }
        self.out.push(Item::Data(head.into_bytes()));
        self.out.push(Item::Mark(TUNNEL));
        let mode = if self.rng.chance(self.p.echo_faults) {
            let n = self.rng.range(0, 20_000);
            match self.rng.below(3) {
                0 => EchoMode::FinAfter(n),
                1 => EchoMode::ResetAfter(n),
                _ => EchoMode::CloseAfter(n),
            }
        } else {
            EchoMode::Echo
        };
        let mut echo = Echo::new(mode, None);
        let rest = self.reader.take_raw();
        if !rest.is_empty() {
            echo.on_data(cx, &rest, &mut self.out);
        }
        self.tunnel = Some(echo);
        self.run(cx);
    }
}

impl Peer for HttpOrigin {
    fn on_open(&mut self, cx: &mut Cx<'_>) {
        self.idle(cx);
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if let Some(echo) = &mut self.tunnel {
            echo.on_data(cx, data, &mut self.out);
            self.run(cx);
            return;
        }
        if self.closed {
            return;
        }
        if self.reader.is_raw() {
            cx.violation(format!("origin: bytes after a refused upgrade: {}", preview(data)));
            return;
        }
        let mut events = Vec::new();
        let result = self.reader.feed(data, &mut events);
        for ev in events {
            match ev {
                Event::Head(h) => self.on_head(cx, h),
                Event::Body(b) => {
                    let Some(cur) = &mut self.cur else { continue };
                    if let Some(at) = payload_mismatch(cur.rid ^ REQ_BODY, cur.got, &b) {
                        cx.violation(format!(
                            "request {:#x}: origin got a wrong body byte at offset {}: {}",
                            cur.rid,
                            cur.got + at as u64,
                            preview(&b[at..])
                        ));
                    }
                    cur.got += b.len() as u64;
                    cx.ledger.request(cur.rid).origin_body = cur.got;
                }
                Event::End => {
                    let Some(cur) = &mut self.cur else { continue };
                    cur.complete = true;
                    cx.ledger.request(cur.rid).origin_complete = true;
                    let (rid, upgrade, answered) = (cur.rid, cur.upgrade, cur.answered);
                    if answered {
                        continue;
                    }
                    if upgrade {
                        self.cur.as_mut().unwrap().answered = true;
                        self.upgrade(cx, rid);
                        if self.tunnel.is_some() {
                            return;
                        }
                        continue;
                    }
                    let (lo, hi) = self.p.think_us;
                    let mut delay = Duration::from_micros(self.rng.range(lo, hi));
                    if self.rng.chance(self.p.stall) {
                        cx.tally.fault("origin-stalls");
                        delay = Duration::from_secs(self.rng.range(5, 600));
                    }
                    cx.timer(delay, RESPOND | (u64::from(self.requests) << 8));
                }
            }
        }
        if let Err(e) = result {
            cx.violation(format!("origin: unparsable request: {e}"));
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        if let Some(echo) = &mut self.tunnel {
            echo.on_eof(cx, &mut self.out);
            self.run(cx);
            return;
        }
        // The proxy is done with this connection.
        self.out.stop();
        if !self.closed {
            self.closed = true;
            cx.close();
        }
    }

    fn on_reset(&mut self, cx: &mut Cx<'_>) {
        if let Some(echo) = &mut self.tunnel {
            echo.on_reset(cx);
        }
        self.out.stop();
        self.closed = true;
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, token: u64) {
        if token == super::PACE {
            let done = self.out.on_timer(cx, &mut self.rng);
            self.after(cx, done);
        } else if token & IDLE != 0 {
            if token & !IDLE == self.idle_gen
                && self.cur.as_ref().is_none_or(|c| c.answered)
                && self.responding.is_none()
                && self.tunnel.is_none()
                && !self.closed
                && self.reader.idle()
            {
                cx.tally.fault("origin-closes-idle-connection");
                self.out.push(Item::Close);
                self.run(cx);
            }
        } else if token & 0xff == RESPOND {
            if let Some(cur) = &mut self.cur {
                if !cur.answered && (token >> 8) as u32 == self.requests {
                    cur.answered = true;
                    let rid = cur.rid;
                    self.respond(cx, rid, false);
                }
            }
        }
    }

    fn on_wind_down(&mut self, cx: &mut Cx<'_>) {
        if self.responding.is_none() && self.tunnel.is_none() && !self.closed && self.reader.idle() {
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
        // The tunnel is named by the upgrade request's id.
        self.tunnel.as_ref()?;
        self.cur.as_ref().map(|c| c.rid)
    }

    fn last_request(&self) -> Option<u64> {
        self.cur.as_ref().map(|c| c.rid)
    }

    fn pooled_http(&self) -> bool {
        // Between requests: the last response is written, nothing is in progress.
        self.tunnel.is_none()
            && !self.closed
            && self.responding.is_none()
            && self.cur.as_ref().is_none_or(|c| c.answered)
            && self.reader.idle()
            && self.out.is_empty()
    }

    fn describe(&self) -> String {
        format!(
            "origin: {} requests, cur {:?}, responding {:?}, tunnel {:?}, closed {}",
            self.requests,
            self.cur,
            self.responding,
            self.tunnel.as_ref().map(|e| (e.id, e.got, e.sent)),
            self.closed
        )
    }
}
