//! What both ends of every tunnel and request saw, written by the peers as it happens and
//! compared when the run is over: the end-to-end invariants that no single peer can judge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::report::{Finding, Notes, Tally};

/// How a peer's connection ended, from the peer's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A FIN from the proxy. `by_timer`: the proxy closed this connection while handling a
    /// timeout (an idle or route timeout): a deliberate, configured end.
    Eof { by_timer: bool },
    /// The connection was reset under the peer (or a write to it failed).
    Reset,
}

/// One tunnel (a CONNECT or an upgrade), named by the client: its bytes and how each end
/// finished. "Client" is the downstream end, "target" the upstream end.
#[derive(Clone, Debug, Default)]
pub struct TunnelRecord {
    /// The proxy said the tunnel is up (200 to a CONNECT, 101 to an upgrade).
    pub opened: bool,
    pub client_sent: u64,
    /// The client half-closed after sending all of `client_sent`.
    pub client_fin: bool,
    /// The client reset its connection (a fault it injected).
    pub client_reset: bool,
    /// Tunnel bytes the client received (after the response head).
    pub client_got: u64,
    pub client_end: Option<End>,
    /// The target has seen this tunnel's first bytes (it learns the id from them).
    pub target_seen: bool,
    pub target_got: u64,
    pub target_sent: u64,
    pub target_fin: bool,
    pub target_reset: bool,
    pub target_end: Option<End>,
    /// Every target connection that saw this tunnel's id (more than one is a bug).
    pub target_conns: u32,
    /// An HTTP upgrade rather than a CONNECT: the tunnel ends when the upstream half-closes
    /// (Envoy disconnects the client), so the target's own FIN may cut the client's stream.
    pub upgrade: bool,
    /// A raw TCP client of a TCP proxy listener, which cannot see its tunnel open: the
    /// upstream end says so (a target the proxy connected to, a terminator's 2xx written).
    pub raw: bool,
    /// For a raw tunnel: its listener's `max_connect_attempts`.
    pub max_attempts: u32,
    /// Tunnel requests (CONNECT heads) terminators got for it, and those they failed
    /// (refused, or closed or reset before answering).
    pub heads: u32,
    pub refusals: u32,
    /// A timeout closed one of the tunnel's connections (a client's, a target's, or a hop
    /// between two listeners): the ends may see it cut short behind a clean FIN.
    pub timer_ended: bool,
}

/// One HTTP request, named by the client (`x-sim-id`).
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    pub body_len: u64,
    /// The whole request (head and body) was written by the client.
    pub sent_complete: bool,
    /// Times an origin saw this request's head (more than once: the proxy duplicated it).
    pub origin_heads: u32,
    pub origin_body: u64,
    pub origin_complete: bool,
    /// Response body bytes the origin wrote and the length it declared.
    pub origin_sent: u64,
    pub origin_declared: u64,
    /// The origin finished its response (framing end, or FIN after an until-close body).
    pub origin_done: bool,
    /// The origin reset the connection while this response was in flight.
    pub origin_reset: bool,
    /// The client got a complete response: its status and whether the origin made it.
    pub response: Option<(u16, bool)>,
    pub response_body: u64,
    /// The client's connection ended before the response was complete.
    pub cut: Option<End>,
    /// This is an upgrade request: its tunnel is in the tunnel ledger under the same id.
    pub upgrade: bool,
}

#[derive(Default, Debug)]
pub struct Ledger {
    pub tunnels: BTreeMap<u64, TunnelRecord>,
    pub requests: BTreeMap<u64, RequestRecord>,
    /// The run had no injected faults: every tunnel must open and every request must get
    /// its origin's whole response.
    pub calm: bool,
    /// The tunnel each client address carries (for terminators, which learn the client's
    /// address from the tunnel request before any of its bytes).
    pub remote_tunnels: BTreeMap<SocketAddr, u64>,
    /// Refusals terminators wrote, by status.
    pub refusals: BTreeMap<u16, u64>,
}

impl Ledger {
    pub fn tunnel(&mut self, id: u64) -> &mut TunnelRecord {
        self.tunnels.entry(id).or_default()
    }

    pub fn request(&mut self, id: u64) -> &mut RequestRecord {
        self.requests.entry(id).or_default()
    }

    /// The end-to-end rules, once every peer is done.
    pub fn check(&self, at: Duration, notes: &mut Notes, tally: &mut Tally) {
        for (id, t) in &self.tunnels {
            tally.tunnels += 1;
            tally.tunnels_opened += u64::from(t.opened);
            check_tunnel(*id, t, self.calm, at, notes);
        }
        for (id, r) in &self.requests {
            tally.requests += 1;
            check_request(*id, r, self.calm, at, notes);
        }
    }
}

fn check_tunnel(id: u64, t: &TunnelRecord, calm: bool, at: Duration, notes: &mut Notes) {
    if t.target_conns > 1 {
        notes.violation(
            at,
            format!("tunnel {id:#x}: its bytes reached {} target connections", t.target_conns),
        );
    }
    if t.target_got > t.client_sent {
        notes.violation(
            at,
            format!("tunnel {id:#x}: target got {} bytes, client sent {}", t.target_got, t.client_sent),
        );
    }
    if t.target_seen && t.client_got > t.target_sent {
        notes.violation(
            at,
            format!("tunnel {id:#x}: client got {} bytes, target sent {}", t.client_got, t.target_sent),
        );
    }
    if t.raw && t.heads > t.max_attempts {
        notes.violation(
            at,
            format!(
                "tunnel {id:#x}: {} tunnel requests reached terminators, max_connect_attempts is {}",
                t.heads, t.max_attempts
            ),
        );
    }
    if !t.opened {
        if t.client_got > 0 {
            notes
                .violation(at, format!("tunnel {id:#x}: client got tunnel bytes without the tunnel opening"));
        }
        // A raw tunnel whose every attempt was refused is closed, as it should be.
        if calm && !(t.raw && t.refusals >= t.max_attempts) {
            notes.consequence(at, format!("tunnel {id:#x}: never opened in a run without faults: {t:?}"));
        }
        return;
    }
    // Client to target: a clean end at the target must come after every byte the client sent
    // (for an upgrade, unless the target half-closed first, which ends the tunnel).
    // A receiver that closed or reset its own connection stopped reading by its own choice.
    if !(t.target_reset || t.upgrade && t.target_fin) {
        direction(
            at,
            notes,
            &format!("tunnel {id:#x} client->target"),
            t.client_sent,
            t.client_fin,
            t.client_reset,
            t.target_got,
            t.target_end,
            t.timer_ended,
        );
    }
    if !t.client_reset && t.target_seen {
        direction(
            at,
            notes,
            &format!("tunnel {id:#x} target->client"),
            t.target_sent,
            t.target_fin,
            t.target_reset,
            t.client_got,
            t.client_end,
            t.timer_ended,
        );
    }
    if calm && (t.client_got != t.target_sent || t.target_got != t.client_sent || !t.client_fin) {
        notes.consequence(at, format!("tunnel {id:#x}: incomplete in a run without faults: {t:?}"));
    }
}

/// One direction of a tunnel: `sent` bytes by the sender (who then half-closed if `fin`, or
/// reset if `reset`); the receiver got `got` and ended with `end`.
#[allow(clippy::too_many_arguments)]
fn direction(
    at: Duration,
    notes: &mut Notes,
    what: &str,
    sent: u64,
    fin: bool,
    reset: bool,
    got: u64,
    end: Option<End>,
    timer_ended: bool,
) {
    let Some(End::Eof { by_timer }) = end else {
        // A reset receiver was told of the failure; a receiver still open is judged by the
        // leak check.
        return;
    };
    if got == sent && fin {
        return;
    }
    if by_timer || timer_ended {
        return; // the proxy's idle timeout ended the tunnel: a configured, deliberate end
    }
    let detail = format!(
        "{what}: receiver saw a clean end after {got} of {sent} bytes (sender fin={fin} reset={reset})"
    );
    if reset {
        notes.finding(at, Finding::ResetBecomesFin, detail);
    } else {
        notes.violation(at, detail);
    }
}

fn check_request(id: u64, r: &RequestRecord, calm: bool, at: Duration, notes: &mut Notes) {
    if r.origin_heads > 1 {
        notes.violation(at, format!("request {id:#x}: the origin got it {} times", r.origin_heads));
    }
    if r.origin_complete && r.origin_body != r.body_len {
        notes.violation(
            at,
            format!(
                "request {id:#x}: origin got a complete body of {} bytes, client sent {}",
                r.origin_body, r.body_len
            ),
        );
    }
    if let Some((status, true)) = r.response {
        if r.origin_heads == 0 {
            notes.violation(
                at,
                format!("request {id:#x}: an origin response ({status}) for a request no origin got"),
            );
        }
        if (!r.upgrade || status != 101) && r.response_body != r.origin_sent {
            let detail = format!(
                "request {id:#x}: client got a complete {status} response with {} body bytes, origin sent {} (declared {}, done {}, reset {})",
                r.response_body, r.origin_sent, r.origin_declared, r.origin_done, r.origin_reset
            );
            if r.origin_reset {
                notes.finding(at, Finding::ResetBecomesFin, detail);
            } else {
                notes.violation(at, detail);
            }
        }
    }
    if r.response.is_none() && r.origin_done && !r.origin_reset && r.cut == Some(End::Eof { by_timer: false })
    {
        notes.violation(
            at,
            format!("request {id:#x}: the origin finished its response, the client saw a clean close before its end: {r:?}"),
        );
    }
    if calm {
        match r.response {
            Some((_, true)) if r.response_body == r.origin_declared || r.upgrade => {}
            _ => notes.consequence(
                at,
                format!("request {id:#x}: no whole origin response in a run without faults: {r:?}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: TunnelRecord) -> Notes {
        let mut ledger = Ledger::default();
        *ledger.tunnel(1) = t;
        let mut notes = Notes::default();
        ledger.check(Duration::ZERO, &mut notes, &mut Tally::default());
        notes
    }

    fn whole() -> TunnelRecord {
        TunnelRecord {
            opened: true,
            client_sent: 100,
            client_fin: true,
            client_got: 100,
            client_end: Some(End::Eof { by_timer: false }),
            target_seen: true,
            target_got: 100,
            target_sent: 100,
            target_fin: true,
            target_end: Some(End::Eof { by_timer: false }),
            target_conns: 1,
            ..TunnelRecord::default()
        }
    }

    #[test]
    fn a_whole_tunnel_passes() {
        let notes = run(whole());
        assert!(notes.violations.is_empty() && notes.findings.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_lost_tail_behind_a_clean_fin_is_a_violation() {
        let notes = run(TunnelRecord { target_got: 95, ..whole() });
        assert!(notes.violations[0].contains("client->target"), "{notes:?}");
    }

    #[test]
    fn a_reset_sender_makes_it_a_known_finding_and_a_timeout_makes_it_fine() {
        let notes = run(TunnelRecord { target_got: 95, client_reset: true, ..whole() });
        assert!(notes.violations.is_empty());
        assert_eq!(notes.findings[0].0, Finding::ResetBecomesFin);
        let notes =
            run(TunnelRecord { target_got: 95, target_end: Some(End::Eof { by_timer: true }), ..whole() });
        assert!(notes.violations.is_empty() && notes.findings.is_empty());
    }

    #[test]
    fn duplicated_or_invented_bytes_are_violations() {
        assert!(!run(TunnelRecord { target_got: 120, ..whole() }).violations.is_empty());
        assert!(!run(TunnelRecord { target_conns: 2, ..whole() }).violations.is_empty());
        assert!(!run(TunnelRecord { opened: false, client_got: 3, ..whole() }).violations.is_empty());
    }

    #[test]
    fn requests_answered_twice_or_truncated_are_violations() {
        let mut ledger = Ledger::default();
        *ledger.request(1) = RequestRecord { origin_heads: 2, ..RequestRecord::default() };
        *ledger.request(2) = RequestRecord {
            origin_heads: 1,
            origin_sent: 10,
            origin_declared: 10,
            origin_done: true,
            response: Some((200, true)),
            response_body: 9,
            ..RequestRecord::default()
        };
        let mut notes = Notes::default();
        ledger.check(Duration::ZERO, &mut notes, &mut Tally::default());
        assert_eq!(notes.violations.len(), 2, "{notes:?}");
    }
}
