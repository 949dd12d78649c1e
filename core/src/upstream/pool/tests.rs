//! Pool tests: a model of the outside world drives the pool, by hand and by proptest, and checks
//! its limits and that every waiter is answered once.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::config::Thresholds;
use crate::stats::Stats;

/// The pool's view of the outside: connections it opened and timers it asked for.
#[derive(Default)]
struct FakeIo {
    next: u32,
    opened: Vec<ConnId>,
}

impl PoolIo for FakeIo {
    fn open(&mut self, _key: PoolKey) -> ConnId {
        self.next += 1;
        let id = ConnId(1000 + self.next);
        self.opened.push(id);
        id
    }
    fn timer(&mut self, _conn: ConnId, _at: Instant) {}
    fn write(&mut self, _conn: ConnId, _data: Bytes) {}
    fn queued(&self, _conn: ConnId) -> usize {
        0
    }
    fn defer(&mut self, _waiter: StreamRef, _event: PoolEvent) {}
    fn close(&mut self, _conn: ConnId, _close: Close) {}
}

#[derive(Clone, Debug)]
enum Op {
    Request(bool),
    Connect(usize, bool),
    Respond(usize, bool),
    Close(usize),
    Cancel(usize),
    ConnectTimeout(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Request),
        3 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(i, ok)| Op::Connect(i, ok)),
        3 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(i, r)| Op::Respond(i, r)),
        1 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::ConnectTimeout),
    ]
}

#[derive(Debug, PartialEq)]
enum Fate {
    Waiting,
    Bound(ConnId),
    Answered,
}

struct World {
    pools: Pools,
    io: FakeIo,
    breakers: Breakers,
    stats: ClusterStats,
    limits: PoolLimits,
    now: Instant,
    fates: Vec<Fate>,
    /// The pool each request asked.
    keys: Vec<PoolKey>,
    /// Connections the test still considers open.
    live: Vec<ConnId>,
}

fn key(port: u16) -> PoolKey {
    PoolKey::plain(
        0,
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port),
        Protocol::Http1,
    )
}

fn waiter(n: usize) -> StreamRef {
    StreamRef { conn: ConnId(n as u32), stream: 1 }
}

impl World {
    fn run<R>(&mut self, f: impl FnOnce(&mut Pools, &mut PoolCtx<'_>) -> R) -> R {
        let mut cx = PoolCtx {
            breakers: &self.breakers,
            stats: &self.stats,
            limits: self.limits,
            now: self.now,
            io: &mut self.io,
        };
        f(&mut self.pools, &mut cx)
    }

    fn answer(&mut self, waiter: StreamRef) {
        let fate = &mut self.fates[waiter.conn.0 as usize];
        assert_ne!(*fate, Fate::Answered, "request {waiter:?} answered twice");
        *fate = Fate::Answered;
    }

    fn bind(&mut self, waiter: StreamRef, conn: ConnId) {
        let n = waiter.conn.0 as usize;
        assert_eq!(self.fates[n], Fate::Waiting, "bound a request that was not waiting");
        let holders = self.fates.iter().filter(|f| **f == Fate::Bound(conn)).count();
        assert_eq!(holders, 0, "two requests bound to one HTTP/1.1 connection");
        assert_eq!(self.pools.conns[&conn].key, self.keys[n], "bound to another pool's connection");
        self.fates[n] = Fate::Bound(conn);
    }

    fn close(&mut self, conn: ConnId, remote: bool) {
        self.live.retain(|&c| c != conn);
        for waiter in self.run(|p, cx| p.closed(conn, remote, cx)) {
            self.answer(waiter);
        }
    }

    fn check(&self, t: &Thresholds) {
        // Past max_connections only by the one connection a pool with none may open.
        let hosts = self.pools.hosts.len() as u64;
        assert!(self.breakers.connections.count() <= self.breakers.connections.max() + hosts);
        assert!(self.breakers.pending.count() <= self.breakers.pending.max());
        assert!(self.breakers.requests.count() <= self.breakers.requests.max());
        assert!(
            self.pools.conns.len() as u64 <= u64::from(t.max_connections) + hosts,
            "more connections than max_connections"
        );
        for (key, host) in &self.pools.hosts {
            let conns = self.pools.conns.values().filter(|c| c.key == *key).count();
            assert_eq!(host.conns, conns, "a pool's connection count is out of step");
        }
        let waiting = self.fates.iter().filter(|f| **f == Fate::Waiting).count() as u64;
        let bound = self.fates.iter().filter(|f| matches!(f, Fate::Bound(_))).count() as u64;
        assert_eq!(self.breakers.pending.count(), waiting, "pending breaker out of step");
        assert_eq!(self.breakers.requests.count(), waiting + bound, "request breaker out of step");
    }
}

fn world(t: &Thresholds, store: &Stats) -> World {
    World {
        pools: Pools::default(),
        io: FakeIo::default(),
        breakers: Breakers::new(store, "c", t),
        stats: ClusterStats::new(store, "c"),
        limits: PoolLimits {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: None,
            max_requests_per_connection: None,
            max_concurrent_streams: 1,
            http2: crate::upstream::pool::client_settings(&crate::config::Http2Options::default()),
            buffer_limit: 1 << 20,
        },
        now: burrow_sim::epoch(),
        fates: Vec::new(),
        keys: Vec::new(),
        live: Vec::new(),
    }
}

/// Envoy's rule: a host with no connection gets one even when other hosts hold every
/// `max_connections` unit, so its requests are not left pending until the others finish.
#[test]
fn a_host_without_connections_is_not_starved_by_others() {
    let t = Thresholds { max_connections: 1, max_pending_requests: 10, max_requests: 10, max_retries: 3 };
    let store = Stats::default();
    let mut w = world(&t, &store);
    let (a, b) = (key(80), key(81));
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(0), cx)), Acquired::Pending);
    assert_eq!(w.io.opened.len(), 1);
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(1), cx)), Acquired::Pending);
    assert_eq!(w.io.opened.len(), 1, "host a already has its connection");
    assert_eq!(w.run(|p, cx| p.acquire(b, waiter(2), cx)), Acquired::Pending);
    assert_eq!(w.io.opened.len(), 2, "host b gets a connection past max_connections");
    assert_eq!(store.value("cluster.c.upstream_cx_overflow"), Some(2));
    let b_conn = w.io.opened[1];
    assert_eq!(w.run(|p, cx| p.connected(b_conn, cx)), Some(waiter(2)));
    // Both units are given back when the connections close.
    w.run(|p, cx| p.cancel(a, waiter(1), cx));
    let a_conn = w.io.opened[0];
    w.run(|p, cx| p.closed(b_conn, false, cx));
    assert_eq!(w.run(|p, cx| p.closed(a_conn, false, cx)).as_slice(), [waiter(0)]);
    assert_eq!(w.breakers.connections.count(), 0);
    assert!(w.pools.hosts.is_empty(), "empty pools are forgotten");
}

/// An upgraded connection keeps its host's place: the host is not "without connections", so
/// its next request waits for room instead of opening one past `max_connections`; the unit
/// comes back, and wakes that request, when the upgraded connection closes.
#[test]
fn an_upgraded_connection_still_counts_for_its_host() {
    let t = Thresholds { max_connections: 1, max_pending_requests: 10, max_requests: 10, max_retries: 3 };
    let store = Stats::default();
    let mut w = world(&t, &store);
    let a = key(80);
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(0), cx)), Acquired::Pending);
    let first = w.io.opened[0];
    assert_eq!(w.run(|p, cx| p.connected(first, cx)), Some(waiter(0)));
    w.run(|p, cx| p.detach(first, cx));
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(1), cx)), Acquired::Pending);
    assert_eq!(w.io.opened.len(), 1, "no connection past the limit beside an upgraded one");
    assert!(w.run(|p, cx| p.closed(first, false, cx)).is_empty());
    assert_eq!(w.io.opened.len(), 2, "the freed unit opens one for the waiting request");
    assert_eq!(w.breakers.connections.count(), 1);
}

/// A request refused by a breaker is counted by the breaker that refused it, and takes no unit.
#[test]
fn refused_requests_count_their_overflow_and_hold_nothing() {
    let t = Thresholds { max_connections: 1, max_pending_requests: 1, max_requests: 2, max_retries: 3 };
    let store = Stats::default();
    let mut w = world(&t, &store);
    let a = key(80);
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(0), cx)), Acquired::Pending);
    // The request breaker has room, the pending one not: the request unit is given back.
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(1), cx)), Acquired::Overflow);
    assert_eq!(store.value("cluster.c.upstream_rq_pending_overflow"), Some(1));
    assert_eq!((w.breakers.pending.count(), w.breakers.requests.count()), (1, 1));
    let conn = w.io.opened[0];
    assert_eq!(w.run(|p, cx| p.connected(conn, cx)), Some(waiter(0)));
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(2), cx)), Acquired::Pending);
    // Both request units taken: refused before the pending breaker is asked.
    assert_eq!(w.run(|p, cx| p.acquire(a, waiter(3), cx)), Acquired::Overflow);
    assert_eq!(store.value("cluster.c.upstream_rq_active_overflow"), Some(1));
    assert_eq!(store.value("cluster.c.upstream_rq_pending_overflow"), Some(1));
    assert_eq!((w.breakers.pending.count(), w.breakers.requests.count()), (1, 2));
    assert_eq!(store.value("cluster.c.upstream_cx_overflow"), Some(1), "the second connection was refused");
}

proptest! {
    /// Whatever arrives in whatever order, no breaker limit is passed, an HTTP/1.1
    /// connection carries one request at a time, and every request is answered once.
    #[test]
    fn pool_keeps_its_limits_and_answers_every_request_once(
        max_connections in 1u32..4,
        max_pending in 1u32..4,
        max_requests in 1u32..6,
        max_per_conn in prop::option::of(1u32..4),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let t = Thresholds { max_connections, max_pending_requests: max_pending, max_requests, max_retries: 3 };
        let stats = Stats::default();
        let mut w = World {
            pools: Pools::default(),
            io: FakeIo::default(),
            breakers: Breakers::new(&stats, "c", &t),
            stats: ClusterStats::new(&stats, "c"),
            limits: PoolLimits {
                connect_timeout: Duration::from_secs(1),
                idle_timeout: None,
                max_requests_per_connection: max_per_conn,
                max_concurrent_streams: 1,
                http2: crate::upstream::pool::client_settings(&crate::config::Http2Options::default()),
                buffer_limit: 1 << 20,
            },
            now: burrow_sim::epoch(),
            fates: Vec::new(),
            keys: Vec::new(),
            live: Vec::new(),
        };
        let mut connected: HashMap<ConnId, bool> = HashMap::new();
        for op in ops {
            match op {
                Op::Request(second) => {
                    let waiter = waiter(w.fates.len());
                    let key = key(if second { 81 } else { 80 });
                    w.fates.push(Fate::Waiting);
                    w.keys.push(key);
                    match w.run(|p, cx| p.acquire(key, waiter, cx)) {
                        Acquired::Bound(conn) => w.bind(waiter, conn),
                        Acquired::Pending => {}
                        Acquired::Overflow => w.answer(waiter),
                    }
                }
                Op::Connect(i, ok) => {
                    let candidates: Vec<ConnId> = w.io.opened.iter().copied()
                        .filter(|c| w.pools.conns.contains_key(c) && !connected.contains_key(c)).collect();
                    if candidates.is_empty() { continue; }
                    let conn = candidates[i % candidates.len()];
                    if ok {
                        connected.insert(conn, true);
                        w.live.push(conn);
                        if let Some(waiter) = w.run(|p, cx| p.connected(conn, cx)) {
                            w.bind(waiter, conn);
                        }
                    } else {
                        w.close(conn, true);
                    }
                }
                Op::Respond(i, reusable) => {
                    let bound: Vec<(usize, ConnId)> = w.fates.iter().enumerate()
                        .filter_map(|(n, f)| match f { Fate::Bound(c) => Some((n, *c)), _ => None }).collect();
                    if bound.is_empty() { continue; }
                    let (waiter, conn) = bound[i % bound.len()];
                    w.answer(self::waiter(waiter));
                    match w.run(|p, cx| p.release(conn, self::waiter(waiter), reusable, cx)) {
                        Released::Rebound { waiter } => w.bind(waiter, conn),
                        Released::Idle => {}
                        Released::Close => w.close(conn, false),
                    }
                }
                Op::Close(i) => {
                    if w.live.is_empty() { continue; }
                    let conn = w.live[i % w.live.len()];
                    w.close(conn, true);
                }
                Op::Cancel(i) => {
                    let waiting: Vec<usize> = w.fates.iter().enumerate()
                        .filter(|(_, f)| **f == Fate::Waiting).map(|(n, _)| n).collect();
                    if waiting.is_empty() { continue; }
                    let n = waiting[i % waiting.len()];
                    let (key, waiter) = (w.keys[n], waiter(n));
                    w.run(|p, cx| p.cancel(key, waiter, cx));
                    w.answer(waiter);
                }
                Op::ConnectTimeout(i) => {
                    let candidates: Vec<ConnId> = w.io.opened.iter().copied()
                        .filter(|c| w.pools.conns.contains_key(c) && !connected.contains_key(c)).collect();
                    if candidates.is_empty() { continue; }
                    let conn = candidates[i % candidates.len()];
                    w.now += Duration::from_secs(2);
                    if let Expired::Connect { failed: Some(waiter) } = w.run(|p, cx| p.expired(conn, cx)) {
                        w.answer(waiter);
                    }
                }
            }
            w.check(&t);
        }
        // Settle: every connection comes up and every request gets its response.
        for _ in 0..1000 {
            let unconnected: Vec<ConnId> = w.io.opened.iter().copied()
                .filter(|c| w.pools.conns.contains_key(c) && !connected.contains_key(c)).collect();
            for conn in unconnected {
                connected.insert(conn, true);
                w.live.push(conn);
                if let Some(waiter) = w.run(|p, cx| p.connected(conn, cx)) { w.bind(waiter, conn); }
            }
            let bound: Vec<(usize, ConnId)> = w.fates.iter().enumerate()
                .filter_map(|(n, f)| match f { Fate::Bound(c) => Some((n, *c)), _ => None }).collect();
            if bound.is_empty() && !w.fates.contains(&Fate::Waiting) { break; }
            for (waiter, conn) in bound {
                w.answer(self::waiter(waiter));
                match w.run(|p, cx| p.release(conn, self::waiter(waiter), true, cx)) {
                    Released::Rebound { waiter } => w.bind(waiter, conn),
                    Released::Idle => {}
                    Released::Close => w.close(conn, false),
                }
            }
            w.check(&t);
        }
        prop_assert!(w.fates.iter().all(|f| *f == Fate::Answered), "unanswered requests: {:?}", w.fates);
    }
}
