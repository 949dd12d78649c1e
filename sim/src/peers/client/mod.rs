//! Downstream peers: a CONNECT client ([`connect`]), an HTTP/1.1 client ([`http`]: plain
//! requests with content-length or chunked bodies, pipelining, `Expect: 100-continue`,
//! upgrades), an HTTP/2 CONNECT client ([`h2`]: several tunnels on one connection), a raw TCP
//! client of a TCP proxy listener ([`raw`]), and what they share: the client half of a tunnel
//! and the mid-head stall check.

mod connect;
mod h2;
mod http;
mod raw;

pub use connect::{ConnectClient, ConnectPlan};
pub use h2::{H2ConnectClient, H2ConnectPlan, H2TunnelPlan};
pub use http::{BodyPlan, HttpClient, HttpPlan, ReqPlan};
pub use raw::{RawClient, RawPlan};

use std::time::Duration;

use super::{stream, stream_byte, Done, Item, Outbox, BANNER, HEADER};
use crate::http::preview;
use crate::peer::Cx;

/// How a client ends its side of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Half-close after the whole stream, then read the rest.
    Fin,
    /// Reset after this many stream bytes.
    Reset(u64),
    /// Close both ways (FIN, reading no more) after this many stream bytes: with bytes
    /// still coming, as good as a reset.
    Close(u64),
}

/// The client half of a tunnel: sends the stream, checks the echo.
#[derive(Debug)]
struct TunnelSide {
    id: u64,
    len: u64,
    /// Bytes of banner expected before the echo.
    banner: u64,
    /// Outbox offset at which the stream starts.
    base: u64,
    got: u64,
    ending: Ending,
}

impl TunnelSide {
    fn total(&self) -> u64 {
        HEADER + self.len
    }

    /// Where the stream stops being sent.
    fn stop_at(&self) -> u64 {
        match self.ending {
            Ending::Fin => self.total(),
            Ending::Reset(at) | Ending::Close(at) => at.min(self.total()),
        }
    }

    /// Queues stream bytes `from..` up to the ending, then the ending.
    fn queue_rest(&self, out: &mut Outbox, from: u64) {
        let stop = self.stop_at();
        if from < stop {
            out.push(Item::Data(stream(self.id, self.len, from, stop)));
        }
        out.push(match self.ending {
            Ending::Fin => Item::Fin,
            Ending::Reset(_) => Item::Reset,
            Ending::Close(_) => Item::Close,
        });
    }

    fn verify(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let k = self.got + i as u64;
            let want = if k < self.banner {
                BANNER[k as usize]
            } else {
                stream_byte(self.id, self.len, k - self.banner)
            };
            if *b != want {
                cx.violation(format!(
                    "tunnel {:#x}: client got a wrong byte at tunnel offset {k} (got {b:#04x}, want {want:#04x}): {}",
                    self.id,
                    preview(&data[i..])
                ));
                break;
            }
        }
        self.got += data.len() as u64;
        cx.ledger.tunnel(self.id).client_got = self.got;
    }

    /// Ledger bookkeeping for what the outbox did.
    fn record(&self, cx: &mut Cx<'_>, done: &[Done], written: u64) {
        let t = cx.ledger.tunnel(self.id);
        t.client_sent = written.saturating_sub(self.base);
        for d in done {
            match d {
                Done::Fin => t.client_fin = true,
                Done::Reset => t.client_reset = true,
                // A close sends FIN first; data arriving after it is answered with a reset.
                Done::Close => {
                    t.client_fin = true;
                    t.client_reset = true;
                }
                _ => {}
            }
        }
    }
}

/// Marks around a stall in the middle of a head.
const STALL_START: u64 = u64::MAX - 10;
const STALL_END: u64 = u64::MAX - 11;

/// Records the stall check: a client stalled mid-head past the stream idle timeout and the
/// proxy let it be.
fn stall_check(cx: &mut Cx<'_>, started: Option<std::time::Duration>, idle: Option<Duration>, ended: bool) {
    let (Some(start), Some(idle)) = (started, idle) else { return };
    let stalled = cx.now.saturating_sub(start);
    if !ended && stalled > idle + Duration::from_secs(1) {
        let what = format!(
            "a client stalled {:.1}s in the middle of a request head, past stream_idle_timeout {:.1}s, and the connection is still open",
            stalled.as_secs_f64(),
            idle.as_secs_f64()
        );
        cx.notes.signature(cx.now, crate::report::Finding::PartialHeadNeverTimesOut, what);
    }
}

/// Whether a client stalled mid-head for the whole stream idle timeout: the proxy may then
/// answer 408 before the head is complete (Envoy's stream idle timeout).
fn timed_out_mid_head(
    cx: &Cx<'_>,
    started: Option<std::time::Duration>,
    idle: Option<Duration>,
    status: u16,
) -> bool {
    let (Some(start), Some(idle)) = (started, idle) else { return false };
    status == 408 && cx.now.saturating_sub(start) >= idle
}
