//! The multiplexed pool under random operations against real HTTP/2 origins (the core's own
//! server codec, each with a small SETTINGS_MAX_CONCURRENT_STREAMS, driven by hand): no
//! origin ever sees more streams at once than it allows, a connection that got a GOAWAY takes
//! no new stream, and every request is answered exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::codec::h2::{Polled, ServerCodec, ServerEvent, Settings};
use crate::config::{Http2Options, Thresholds};
use crate::stats::Stats;

#[derive(Default)]
struct Io {
    next: u32,
    opened: Vec<ConnId>,
    writes: Vec<(ConnId, Bytes)>,
    deferred: Vec<(StreamRef, PoolEvent)>,
    closes: Vec<ConnId>,
}

impl PoolIo for Io {
    fn open(&mut self, _key: PoolKey) -> ConnId {
        self.next += 1;
        let id = ConnId(1000 + self.next);
        self.opened.push(id);
        id
    }
    fn timer(&mut self, _conn: ConnId, _at: Instant) {}
    fn write(&mut self, conn: ConnId, data: Bytes) {
        self.writes.push((conn, data));
    }
    fn queued(&self, _conn: ConnId) -> usize {
        0
    }
    fn defer(&mut self, waiter: StreamRef, event: PoolEvent) {
        self.deferred.push((waiter, event));
    }
    fn close(&mut self, conn: ConnId, _close: Close) {
        self.closes.push(conn);
    }
}

/// One origin connection: the server codec, its open streams, the most it had at once.
struct Origin {
    codec: ServerCodec,
    open: Vec<usize>,
    most: usize,
    goaway: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Waiting,
    Answered,
}

struct World {
    pools: Pools,
    io: Io,
    breakers: Breakers,
    stats: ClusterStats,
    limits: PoolLimits,
    now: Instant,
    /// The origins' stream limit.
    peer_limit: u32,
    origins: HashMap<ConnId, Origin>,
    /// Connections whose GOAWAY the pool has read: they must bind nothing more.
    away: Vec<ConnId>,
    fates: Vec<Fate>,
}

fn key() -> PoolKey {
    PoolKey::plain(0, SocketAddr::from(([127, 0, 0, 1], 80)), Protocol::Http2)
}

fn waiter(n: usize) -> StreamRef {
    StreamRef { conn: ConnId(n as u32), stream: 1 }
}

fn request() -> http::Request<()> {
    http::Request::builder().uri("http://origin/").body(()).unwrap()
}

impl World {
    fn new(peer_limit: u32, configured: usize, max_requests: Option<u32>) -> World {
        let store = Stats::default();
        let t = Thresholds {
            max_connections: 1000,
            max_pending_requests: 1000,
            max_requests: 1000,
            max_retries: 3,
        };
        World {
            pools: Pools::default(),
            io: Io::default(),
            breakers: Breakers::new(&store, "c", &t),
            stats: ClusterStats::new(&store, "c"),
            limits: PoolLimits {
                connect_timeout: Duration::from_secs(1),
                idle_timeout: None,
                max_requests_per_connection: max_requests,
                max_concurrent_streams: configured,
                http2: client_settings(&Http2Options::default()),
                buffer_limit: 1 << 20,
            },
            now: burrow_sim::epoch(),
            peer_limit,
            origins: HashMap::new(),
            away: Vec::new(),
            fates: Vec::new(),
        }
    }

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
        assert_eq!(*fate, Fate::Waiting, "request {waiter:?} answered twice");
        *fate = Fate::Answered;
    }

    fn ask(&mut self, waiter: StreamRef) {
        match self.run(|p, cx| p.acquire(key(), waiter, cx)) {
            Acquired::Bound(conn) => self.bound(waiter, conn),
            Acquired::Pending => {}
            Acquired::Overflow => self.answer(waiter),
        }
    }

    /// What the router does with a connection: send the head, or ask again if it is gone.
    fn bound(&mut self, waiter: StreamRef, conn: ConnId) {
        assert!(!self.away.contains(&conn), "{waiter:?} bound to {conn:?} after its GOAWAY");
        if !self.run(|p, cx| p.open_stream(conn, waiter, request(), true, cx)) {
            self.ask(waiter);
        }
    }

    fn handle(&mut self, events: impl IntoIterator<Item = (StreamRef, PoolEvent)>) {
        for (waiter, event) in events {
            match event {
                PoolEvent::Bound(conn) => self.bound(waiter, conn),
                PoolEvent::Failed(_) | PoolEvent::UpstreamGone => self.answer(waiter),
                PoolEvent::UpstreamFlushed => {}
                PoolEvent::Response(conn) => {
                    while let Some(event) = self.pools.poll_response(conn, waiter) {
                        match event {
                            UpEvent::End | UpEvent::Error => {
                                self.answer(waiter);
                                match self.run(|p, cx| p.release(conn, waiter, true, cx)) {
                                    Released::Rebound { waiter } => self.bound(waiter, conn),
                                    Released::Idle | Released::Close => {}
                                }
                                break;
                            }
                            UpEvent::Refused => {
                                self.run(|p, cx| p.release(conn, waiter, false, cx));
                                self.ask(waiter);
                                break;
                            }
                            UpEvent::Head(..) | UpEvent::Data(_) => {}
                        }
                    }
                }
            }
        }
        let deferred = std::mem::take(&mut self.io.deferred);
        if !deferred.is_empty() {
            self.handle(deferred);
        }
        for conn in std::mem::take(&mut self.io.closes) {
            self.origins.remove(&conn);
        }
    }

    /// Connects the connections the pool opened, giving each an origin.
    fn connect(&mut self) {
        for conn in std::mem::take(&mut self.io.opened) {
            let settings = Settings {
                max_concurrent_streams: self.peer_limit,
                initial_stream_window_size: 65535,
                initial_connection_window_size: 65535,
                max_header_list_size: 1 << 16,
                extended_connect: false,
            };
            self.origins.insert(
                conn,
                Origin { codec: ServerCodec::new(settings), open: Vec::new(), most: 0, goaway: false },
            );
            let out = self.run(|p, cx| p.on_event(conn, ConnEvent::Connected, cx));
            self.apply(conn, out);
        }
    }

    fn apply(&mut self, conn: ConnId, out: PoolOutput) {
        if out.close.is_some() {
            self.origins.remove(&conn);
        }
        self.handle(out.events);
    }

    /// Moves bytes both ways until neither side has more.
    fn pump(&mut self) {
        for _ in 0..50 {
            self.connect();
            let writes = std::mem::take(&mut self.io.writes);
            let mut moved = !writes.is_empty();
            for (conn, data) in writes {
                if let Some(origin) = self.origins.get_mut(&conn) {
                    origin.codec.read(data);
                }
            }
            let conns: Vec<ConnId> = self.origins.keys().copied().collect();
            for conn in conns {
                let Some(origin) = self.origins.get_mut(&conn) else { continue };
                origin.codec.set_room(usize::MAX / 2);
                while let Some(polled) = origin.codec.poll() {
                    if let Polled::Stream(key, ServerEvent::Head(..)) = polled {
                        origin.open.push(key);
                        origin.most = origin.most.max(origin.open.len());
                    }
                }
                let goaway = origin.goaway;
                if let Some(out) = origin.codec.take_output() {
                    moved = true;
                    let result = self.run(|p, cx| p.on_event(conn, ConnEvent::Data(out), cx));
                    if goaway && !self.away.contains(&conn) {
                        self.away.push(conn);
                    }
                    self.apply(conn, result);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn respond(&mut self, pick: usize) {
        let conns: Vec<ConnId> = self.origins.keys().copied().collect();
        let Some(&conn) = conns.get(pick % conns.len().max(1)) else { return };
        let origin = self.origins.get_mut(&conn).unwrap();
        if origin.open.is_empty() {
            return;
        }
        let key = origin.open.remove(pick % origin.open.len());
        origin.codec.send_head(key, http::Response::new(()), true);
        origin.codec.remove(key);
    }

    fn reset(&mut self, pick: usize) {
        let mut conns: Vec<ConnId> = self.origins.keys().copied().collect();
        conns.sort();
        let Some(&conn) = conns.get(pick % conns.len().max(1)) else { return };
        self.origins.remove(&conn);
        let out = self.run(|p, cx| p.on_event(conn, ConnEvent::Closed, cx));
        self.apply(conn, out);
    }

    fn goaway(&mut self, pick: usize) {
        let mut conns: Vec<ConnId> = self.origins.keys().copied().collect();
        conns.sort();
        let Some(&conn) = conns.get(pick % conns.len().max(1)) else { return };
        let origin = self.origins.get_mut(&conn).unwrap();
        origin.codec.graceful_shutdown();
        origin.goaway = true;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Request,
    Respond(usize),
    GoAway(usize),
    /// The connection is reset under its streams.
    Reset(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Request),
        4 => any::<usize>().prop_map(Op::Respond),
        1 => any::<usize>().prop_map(Op::GoAway),
        1 => any::<usize>().prop_map(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn streams_stay_within_every_limit_and_every_request_is_answered_once(
        ops in proptest::collection::vec(op(), 1..60),
        peer_limit in 1u32..4,
        configured in 1usize..6,
        max_requests in proptest::option::of(1u32..5),
    ) {
        let mut w = World::new(peer_limit, configured, max_requests);
        for op in ops {
            match op {
                Op::Request => {
                    let n = w.fates.len();
                    w.fates.push(Fate::Waiting);
                    w.ask(waiter(n));
                }
                Op::Respond(pick) => w.respond(pick),
                Op::GoAway(pick) => w.goaway(pick),
                Op::Reset(pick) => w.reset(pick),
            }
            w.pump();
            let limit = (peer_limit as usize).min(configured);
            for (conn, origin) in &w.origins {
                prop_assert!(origin.most <= limit, "{conn:?} had {} streams at once, limit {limit}", origin.most);
            }
        }
        // Everything still open is answered, round after round, until no request waits.
        for _ in 0..200 {
            if !w.fates.contains(&Fate::Waiting) {
                break;
            }
            let open: usize = w.origins.values().map(|o| o.open.len()).sum();
            for pick in 0..open.max(1) * w.origins.len().max(1) {
                w.respond(pick);
            }
            w.pump();
        }
        let origins: Vec<String> =
            w.origins.iter().map(|(c, o)| format!("{c:?} open={:?} goaway={}", o.open, o.goaway)).collect();
        prop_assert!(
            !w.fates.contains(&Fate::Waiting),
            "requests never answered: {:?}\n{}origins: {origins:?}",
            w.fates,
            w.pools.describe_mux()
        );
    }
}
