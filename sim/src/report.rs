//! What a run found (violations, known-issue findings) and what it did (the tally printed as
//! a suite's summary line).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A known divergence from the invariants, reported to the lead and counted rather than
/// failed on, unless `BURROW_SIM_STRICT=1`. Each names the core behaviour it stands for; when
/// the core changes, drop the class and the suites enforce the invariant again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    /// One end of a tunnel (or a response) was reset, and the proxy told the other end with a
    /// clean FIN (`CloseKind::Flush`): the other end cannot tell a truncated stream from a
    /// complete one. `CloseKind` has no "flush, then reset" to say it with.
    ResetBecomesFin,
    /// A pooled upstream connection paused for back-pressure (`PauseRead`) went back to the
    /// pool still paused (the response ended in the read that filled the client's queue):
    /// the next request on it never has its response read, and the origin's FIN is never
    /// seen. Signature: a timeout or the end of the run finds an upstream connection paused
    /// with bytes waiting (unless the client the response goes to still has more than half
    /// its buffer limit to read: then a stream or route idle timeout may end the response, as
    /// in Envoy, whose stream idle timer does not count downstream flushes). Fixed (release
    /// resumes reading); what remained under other generator seeds was that legitimate case.
    PooledConnectionLeftPaused,
    /// A request waits as pending on its host's pool while the cluster's `max_connections`
    /// has room (freed by another host's connection) and nothing connects for it. Fixed: a
    /// freed unit wakes every pool of the cluster, and a host with no connection gets one
    /// even while others hold the breaker (as Envoy allows). Signature: a pending request,
    /// room in the breaker, and no connection being opened.
    PendingRequestStarved,
    /// A downstream connection paused for a pipelined request read ahead is never read again
    /// after the request before it is refused at the pool (a circuit breaker's 503 answered
    /// in `stream_acquire`): `overloaded()` does not resume reading as `stream_local_reply`
    /// does. The pipelined request hangs, and with a partial head no timer runs at all.
    /// Signature: the run ends with a client connection paused, bytes waiting, and nothing
    /// pending in any pool.
    DownstreamLeftPaused,
    /// While a CONNECT's target name resolves (`State::Resolving`), bytes the client sends
    /// are kept in `early` without limit and reading is never paused; once connected they are
    /// all written upstream at once, far past the buffer limit. Signature: a queue over the
    /// bound towards a tunnel upstream opened after a DNS answer.
    EarlyDataUnboundedWhileResolving,
    /// A client that stops in the middle of a request head is never timed out: no timer runs
    /// while a head is partial (`idle_deadline` needs an empty buffer and no stream exists
    /// yet), where Envoy's stream idle timeout (default 5 min) answers 408. A slow-loris
    /// client holds its connection forever. Signature: a client stalls mid-head for longer
    /// than `stream_idle_timeout` and the proxy does nothing.
    PartialHeadNeverTimesOut,
    /// A tunnel whose client reads slowly is ended as idle while bytes still flow: the
    /// tunnel's idle clock (`Tunnel::last_activity`) moves only on reads, not on `Flushed`,
    /// so with the far side paused for back-pressure and the client draining the queue for
    /// longer than the idle timeout, the tunnel is cut with data still waiting (Envoy's TCP
    /// proxy counts bytes sent as activity). Signature: an idle timeout closes a tunnel whose
    /// upstream the proxy had paused with bytes waiting.
    IdleTimeoutWhileDraining,
    /// A TCP proxy's `max_downstream_connection_duration` that expires while the connection's
    /// tunnel is still being set up (connecting, or its CONNECT unanswered) closes the client
    /// with a clean FIN although bytes it sent were read and will never go anywhere:
    /// `TcpConn::on_timer` ends it as `Ending::Timeout`, whose downstream close is
    /// `Close::Flush`, where `give_up` resets a client with held bytes (as Envoy's unread
    /// bytes make the kernel reset it), so that it cannot take the close for a clean end.
    /// Signature: a raw client whose tunnel never opened gets a FIN by a timer after the proxy
    /// read some of its bytes. Fixed: `TcpConn::end` resets a client whose bytes it holds.
    DurationLimitClosesHeldBytesCleanly,
}

impl Finding {
    pub const ALL: [Finding; 8] = [
        Finding::ResetBecomesFin,
        Finding::PooledConnectionLeftPaused,
        Finding::PendingRequestStarved,
        Finding::DownstreamLeftPaused,
        Finding::EarlyDataUnboundedWhileResolving,
        Finding::PartialHeadNeverTimesOut,
        Finding::IdleTimeoutWhileDraining,
        Finding::DurationLimitClosesHeldBytesCleanly,
    ];

    /// Fixed in the core: its signature is a regression now, and fails every run.
    pub fn fixed(self) -> bool {
        matches!(
            self,
            Finding::ResetBecomesFin
                | Finding::PooledConnectionLeftPaused
                | Finding::DownstreamLeftPaused
                | Finding::PendingRequestStarved
                | Finding::EarlyDataUnboundedWhileResolving
                | Finding::PartialHeadNeverTimesOut
                | Finding::IdleTimeoutWhileDraining
                | Finding::DurationLimitClosesHeldBytesCleanly
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Finding::ResetBecomesFin => "reset-becomes-fin",
            Finding::PooledConnectionLeftPaused => "pooled-connection-left-paused",
            Finding::PendingRequestStarved => "pending-request-starved",
            Finding::DownstreamLeftPaused => "downstream-left-paused",
            Finding::EarlyDataUnboundedWhileResolving => "early-data-unbounded-while-resolving",
            Finding::PartialHeadNeverTimesOut => "partial-head-never-times-out",
            Finding::IdleTimeoutWhileDraining => "idle-timeout-while-draining",
            Finding::DurationLimitClosesHeldBytesCleanly => "duration-limit-closes-held-bytes-cleanly",
        }
    }
}

/// Violations and findings of one run, with the virtual time they were seen at.
#[derive(Default, Debug)]
pub struct Notes {
    pub violations: Vec<String>,
    pub findings: Vec<(Finding, String)>,
    /// Violations that a known issue explains when its signature was seen in the run (a
    /// stuck client, a leaked connection, a timeout reply in a run without faults): they
    /// become findings of that issue, or violations if no known issue was seen.
    consequences: Vec<String>,
    /// Known issues whose signature was seen in this run.
    pub seen: Vec<Finding>,
}

impl Notes {
    pub fn consequence(&mut self, at: Duration, what: impl Into<String>) {
        self.consequences.push(format!("[{}] {}", crate::trace::fmt_time(at), what.into()));
    }

    /// Records that a known issue's signature was seen (once per run).
    pub fn signature(&mut self, at: Duration, class: Finding, what: impl Into<String>) {
        if !self.seen.contains(&class) {
            self.seen.push(class);
            self.finding(at, class, format!("signature: {}", what.into()));
        }
    }

    /// Settles the consequences: findings of the first known issue seen, else violations.
    pub fn settle(&mut self) {
        let consequences = std::mem::take(&mut self.consequences);
        match self.seen.iter().find(|c| **c != Finding::ResetBecomesFin) {
            Some(class) => {
                let class = *class;
                self.findings.extend(consequences.into_iter().map(|c| (class, format!("consequence: {c}"))));
            }
            None => self.violations.extend(consequences),
        }
    }

    pub fn violation(&mut self, at: Duration, what: impl Into<String>) {
        self.violations.push(format!("[{}] {}", crate::trace::fmt_time(at), what.into()));
    }

    pub fn finding(&mut self, at: Duration, class: Finding, what: impl Into<String>) {
        self.findings.push((class, format!("[{}] {}", crate::trace::fmt_time(at), what.into())));
    }
}

/// Counts over one run or a whole suite.
#[derive(Clone, Default, Debug)]
pub struct Tally {
    pub scenarios: u64,
    pub virtual_time: Duration,
    /// Injected faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    pub inputs: u64,
    pub outputs: u64,
    pub tunnels: u64,
    pub tunnels_opened: u64,
    pub requests: u64,
    pub origin_responses: u64,
    /// Local replies (responses the proxy made itself) by status.
    pub local_replies: BTreeMap<u16, u64>,
    pub bytes: u64,
    pub findings: BTreeMap<&'static str, u64>,
    pub max_queued: usize,
    pub calm: u64,
}

impl Tally {
    pub fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    pub fn local_reply(&mut self, status: u16) {
        *self.local_replies.entry(status).or_default() += 1;
    }

    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn add(&mut self, other: &Tally) {
        self.scenarios += other.scenarios;
        self.virtual_time += other.virtual_time;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in &other.local_replies {
            *self.local_replies.entry(*k).or_default() += v;
        }
        for (k, v) in &other.findings {
            *self.findings.entry(k).or_default() += v;
        }
        self.inputs += other.inputs;
        self.outputs += other.outputs;
        self.tunnels += other.tunnels;
        self.tunnels_opened += other.tunnels_opened;
        self.requests += other.requests;
        self.origin_responses += other.origin_responses;
        self.bytes += other.bytes;
        self.max_queued = self.max_queued.max(other.max_queued);
        self.calm += other.calm;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hours = self.virtual_time.as_secs_f64() / 3600.0;
        write!(
            f,
            "{} scenarios ({} calm), {:.2} simulated hours, {} faults injected, {} inputs, {} outputs, \
             {} tunnels ({} opened), {} requests ({} origin responses), {:.1} MB moved, max queued {} B",
            self.scenarios,
            self.calm,
            hours,
            self.faults_total(),
            self.inputs,
            self.outputs,
            self.tunnels,
            self.tunnels_opened,
            self.requests,
            self.origin_responses,
            self.bytes as f64 / 1e6,
            self.max_queued,
        )?;
        let faults: Vec<String> = self.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(f, "\n  faults: {}", faults.join(", "))?;
        let replies: Vec<String> = self.local_replies.iter().map(|(k, v)| format!("{k}x{v}")).collect();
        write!(
            f,
            "\n  local replies: {}",
            if replies.is_empty() { "none".into() } else { replies.join(", ") }
        )?;
        if !self.findings.is_empty() {
            let findings: Vec<String> = self.findings.iter().map(|(k, v)| format!("{k} {v}")).collect();
            write!(
                f,
                "\n  known-issue findings (tolerated; BURROW_SIM_STRICT=1 fails on them): {}",
                findings.join(", ")
            )?;
        }
        Ok(())
    }
}
