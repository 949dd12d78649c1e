//! The core's timer table: every deadline any machine wants, one soonest for the driver.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::io::ConnId;

/// What a deadline is for. The owner re-checks its own state when one fires, so a timer that
/// became moot (the connection finished, or the deadline moved) needs no cancelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A downstream HTTP connection's deadline (connect, route, idle timeouts); it checks
    /// which one is due.
    Http(ConnId),
    /// A pooled upstream connection's connect or idle deadline.
    Pool(ConnId),
    /// A closing connection's flush deadline.
    Closing(ConnId),
    /// A DNS cluster's addresses are due for refresh.
    DnsRefresh(usize),
    /// The graceful-shutdown drain period is over.
    Drain,
}

/// A min-heap of deadlines with lazy cancellation.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the next timer due at or before `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }
}

#[cfg(test)]
impl Timers {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
