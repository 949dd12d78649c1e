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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `ms` after one base instant, the same for the whole test run.
    fn at(ms: u64) -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(burrow_sim::epoch) + Duration::from_millis(ms)
    }

    /// Every timer due by `now`, in the order the table gives them.
    fn drain(timers: &mut Timers, now: Instant) -> Vec<Timer> {
        std::iter::from_fn(|| timers.expired(now)).collect()
    }

    #[test]
    fn timers_fire_soonest_first_and_only_when_due() {
        let mut timers = Timers::default();
        assert_eq!((timers.next(), timers.expired(at(1000))), (None, None));
        timers.set(at(30), Timer::Drain);
        timers.set(at(10), Timer::Http(ConnId(1)));
        timers.set(at(20), Timer::DnsRefresh(0));
        assert_eq!(timers.next(), Some(at(10)), "the soonest deadline, whatever the order set");
        assert_eq!(timers.expired(at(9)), None, "not yet due");
        assert_eq!(drain(&mut timers, at(20)), [Timer::Http(ConnId(1)), Timer::DnsRefresh(0)]);
        assert_eq!(timers.next(), Some(at(30)));
        assert_eq!(drain(&mut timers, at(100)), [Timer::Drain]);
        assert_eq!((timers.next(), timers.len()), (None, 0));
    }

    #[test]
    fn equal_deadlines_fire_in_a_fixed_order() {
        let all = [
            Timer::Drain,
            Timer::DnsRefresh(1),
            Timer::Closing(ConnId(2)),
            Timer::Pool(ConnId(2)),
            Timer::Http(ConnId(3)),
            Timer::Http(ConnId(2)),
        ];
        let mut timers = Timers::default();
        for timer in all {
            timers.set(at(5), timer);
        }
        let mut sorted = all;
        sorted.sort();
        assert_eq!(drain(&mut timers, at(5)), sorted, "same deadline, same order on every run");
    }

    /// Moving a deadline sets the timer again: the table keeps both (the owner re-checks its
    /// state when either fires), and each fires at its own time.
    #[test]
    fn setting_a_timer_again_keeps_both_deadlines() {
        let mut timers = Timers::default();
        timers.set(at(50), Timer::Pool(ConnId(7)));
        timers.set(at(20), Timer::Pool(ConnId(7)));
        assert_eq!((timers.len(), timers.next()), (2, Some(at(20))));
        assert_eq!(drain(&mut timers, at(20)), [Timer::Pool(ConnId(7))]);
        assert_eq!(timers.next(), Some(at(50)), "the first deadline is not cancelled");
        assert_eq!(drain(&mut timers, at(50)), [Timer::Pool(ConnId(7))]);
    }

    /// A timer names its owner by kind and id: one connection id under several kinds, or one
    /// kind for several ids, are distinct timers.
    #[test]
    fn kinds_and_ids_are_not_confused() {
        let mut timers = Timers::default();
        timers.set(at(3), Timer::Closing(ConnId(1)));
        timers.set(at(1), Timer::Http(ConnId(1)));
        timers.set(at(2), Timer::Pool(ConnId(1)));
        timers.set(at(4), Timer::Http(ConnId(2)));
        timers.set(at(5), Timer::DnsRefresh(1));
        let fired: Vec<_> = (1..=5).map(|ms| timers.expired(at(ms))).collect();
        assert_eq!(
            fired,
            [
                Some(Timer::Http(ConnId(1))),
                Some(Timer::Pool(ConnId(1))),
                Some(Timer::Closing(ConnId(1))),
                Some(Timer::Http(ConnId(2))),
                Some(Timer::DnsRefresh(1)),
            ]
        );
    }
}
