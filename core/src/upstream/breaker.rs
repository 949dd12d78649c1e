//! Circuit breakers: per-cluster limits that hold for the whole process, summed over workers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Thresholds;
use crate::stats::{Gauge, Stats};

/// One limited resource (connections, pending requests, requests, retries). The count is
/// shared by every worker; taking a unit is a compare-and-swap, so concurrent workers can
/// never push it past the limit together.
pub(crate) struct Resource {
    count: AtomicU64,
    max: u64,
    /// `circuit_breakers.default.<x>_open`: 1 while the resource is at its limit.
    open: Gauge,
    /// `circuit_breakers.default.remaining_<x>`.
    remaining: Gauge,
}

impl Resource {
    fn new(stats: &Stats, cluster: &str, open: &str, remaining: &str, max: u32) -> Resource {
        let scope = format!("cluster.{cluster}.circuit_breakers.default");
        let resource = Resource {
            count: AtomicU64::new(0),
            max: u64::from(max),
            open: stats.gauge(&format!("{scope}.{open}")),
            remaining: stats.gauge(&format!("{scope}.{remaining}")),
        };
        resource.publish(0);
        resource
    }

    /// Takes one unit if the limit allows.
    pub(crate) fn try_acquire(&self) -> bool {
        let taken =
            self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        match taken {
            Ok(previous) => {
                self.publish(previous + 1);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes one unit even past the limit: for the one connection a pool with none may open
    /// when other hosts hold every unit (see the pool's starvation rule).
    pub(crate) fn force_acquire(&self) {
        let previous = self.count.fetch_add(1, Ordering::AcqRel);
        self.publish(previous + 1);
    }

    pub(crate) fn release(&self) {
        let previous = self.count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(previous > 0, "circuit breaker released below zero");
        self.publish(previous.saturating_sub(1));
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    fn publish(&self, count: u64) {
        self.open.set(u64::from(count >= self.max));
        self.remaining.set(self.max.saturating_sub(count));
    }
}

/// The default-priority thresholds of one cluster.
pub(crate) struct Breakers {
    pub(crate) connections: Resource,
    pub(crate) pending: Resource,
    pub(crate) requests: Resource,
}

impl Breakers {
    pub(crate) fn new(stats: &Stats, cluster: &str, t: &Thresholds) -> Breakers {
        Breakers {
            connections: Resource::new(stats, cluster, "cx_open", "remaining_cx", t.max_connections),
            pending: Resource::new(
                stats,
                cluster,
                "rq_pending_open",
                "remaining_pending",
                t.max_pending_requests,
            ),
            requests: Resource::new(stats, cluster, "rq_open", "remaining_rq", t.max_requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "cluster.c.circuit_breakers.default";

    fn thresholds(max_connections: u32, max_pending_requests: u32, max_requests: u32) -> Thresholds {
        Thresholds { max_connections, max_pending_requests, max_requests, max_retries: 3 }
    }

    /// The `open` and `remaining` gauges of one resource.
    fn gauges(stats: &Stats, open: &str, remaining: &str) -> (u64, u64) {
        let value = |name: &str| stats.value(&format!("{SCOPE}.{name}")).expect(name);
        (value(open), value(remaining))
    }

    #[test]
    fn units_are_taken_up_to_max_and_given_back() {
        let stats = Stats::default();
        let b = Breakers::new(&stats, "c", &thresholds(2, 5, 5));
        let cx = || gauges(&stats, "cx_open", "remaining_cx");
        assert_eq!(cx(), (0, 2), "published before any unit is taken");
        assert!(b.connections.try_acquire());
        assert_eq!((b.connections.count(), cx()), (1, (0, 1)));
        assert!(b.connections.try_acquire());
        assert_eq!((b.connections.count(), cx()), (2, (1, 0)));
        assert!(!b.connections.try_acquire(), "past max_connections");
        assert_eq!((b.connections.count(), cx()), (2, (1, 0)), "a refusal takes nothing");
        b.connections.release();
        assert_eq!((b.connections.count(), cx()), (1, (0, 1)));
        assert!(b.connections.try_acquire(), "a released unit can be taken again");
    }

    #[test]
    fn force_acquire_goes_past_max_and_release_comes_back_under_it() {
        let stats = Stats::default();
        let b = Breakers::new(&stats, "c", &thresholds(1, 5, 5));
        let cx = || gauges(&stats, "cx_open", "remaining_cx");
        assert!(b.connections.try_acquire());
        b.connections.force_acquire();
        assert_eq!(b.connections.count(), 2);
        assert_eq!(cx(), (1, 0), "remaining saturates at zero past the limit");
        assert!(!b.connections.try_acquire());
        b.connections.release();
        assert_eq!((b.connections.count(), cx()), (1, (1, 0)), "still at the limit");
        b.connections.release();
        assert_eq!((b.connections.count(), cx()), (0, (0, 1)));
    }

    #[test]
    fn a_zero_limit_is_open_from_the_start() {
        let stats = Stats::default();
        let b = Breakers::new(&stats, "c", &thresholds(1, 0, 1));
        assert_eq!(gauges(&stats, "rq_pending_open", "remaining_pending"), (1, 0));
        assert!(!b.pending.try_acquire());
        assert_eq!(b.pending.count(), 0);
    }

    #[test]
    fn each_threshold_limits_its_own_resource() {
        let stats = Stats::default();
        let b = Breakers::new(&stats, "c", &thresholds(1, 2, 3));
        assert_eq!((b.connections.max(), b.pending.max(), b.requests.max()), (1, 2, 3));
        assert!(b.pending.try_acquire());
        assert_eq!(gauges(&stats, "rq_pending_open", "remaining_pending"), (0, 1));
        assert_eq!(gauges(&stats, "remaining_cx", "remaining_rq"), (1, 3), "the others untouched");
        assert_eq!(gauges(&stats, "cx_open", "rq_open"), (0, 0));
    }
}
