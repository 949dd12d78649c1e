//! The connection manager's context: what downstream connections work with besides their
//! own state. The proxy owns it and lends it to one connection at a time.

use std::net::SocketAddr;

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::clock::Clock;
use crate::config::Config;
use crate::io::{ConnId, Output, StreamRef};
use crate::shared::Shared;
use crate::stats::Counter;
use crate::timers::{Timer, Timers};
use crate::transport::{Close, Wire};
use crate::upstream::cluster::Clusters;
use crate::upstream::pool::{PoolCtx, PoolEvent, PoolIo, PoolKey, Pools, Released};

/// What the connection manager works with besides its own state: the config, the stats,
/// the clock and timer table, clusters and pools, and the wire to write to.
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: Clock,
    pub(crate) timers: Timers,
    pub(crate) clusters: Clusters,
    pub(crate) pools: Pools,
    pub(crate) wire: Wire,
    /// Connections that got an owner while a machine ran (new upstream connections, a
    /// pooled connection turned tunnel), registered by the proxy when it returns.
    pub(crate) adopted: Vec<(ConnId, Owner)>,
    /// Pool events for other downstream connections, delivered when the running machine
    /// returns.
    pub(crate) deferred: Vec<(StreamRef, PoolEvent)>,
    /// Pooled connections the pool is done with, closed when the running machine returns.
    pub(crate) closing: Vec<(ConnId, Close)>,
    /// `upstream_rq_<code>` handles, made on first use of each code.
    pub(crate) status_counters: rustc_hash::FxHashMap<(usize, u16), Counter>,
    /// SplitMix64 state: request ids without an OS random source.
    pub(crate) rng: u64,
    /// Shutting down, or not yet listening: responses carry `connection: close`.
    pub(crate) draining: bool,
}

/// Who owns a connection opened (or taken over) while a machine ran.
pub(crate) enum Owner {
    /// The upstream side of `downstream`'s tunnel.
    Tunnel { downstream: ConnId, cluster: usize },
    /// A connection of the cluster's HTTP pool.
    Pool { cluster: usize },
}

/// The pool's view of the context: where to open connections and set its timers. It borrows
/// only what it needs, so a pool runs beside the rest of the context without moving it.
struct PoolWire<'a> {
    wire: &'a mut Wire,
    adopted: &'a mut Vec<(ConnId, Owner)>,
    timers: &'a mut Timers,
    deferred: &'a mut Vec<(StreamRef, PoolEvent)>,
    closing: &'a mut Vec<(ConnId, Close)>,
}

impl PoolIo for PoolWire<'_> {
    fn open(&mut self, key: PoolKey) -> ConnId {
        let id = self.wire.alloc();
        self.adopted.push((id, Owner::Pool { cluster: key.cluster }));
        self.wire.push(Output::Connect { conn: id, addr: key.addr });
        id
    }

    fn timer(&mut self, conn: ConnId, at: Instant) {
        self.timers.set(at, Timer::Pool(conn));
    }

    fn write(&mut self, conn: ConnId, data: Bytes) {
        self.wire.write(conn, data);
    }

    fn queued(&self, conn: ConnId) -> usize {
        self.wire.queued(conn)
    }

    fn defer(&mut self, waiter: StreamRef, event: PoolEvent) {
        self.deferred.push((waiter, event));
    }

    fn close(&mut self, conn: ConnId, close: Close) {
        self.closing.push((conn, close));
    }
}

impl Ctx {
    /// A context for `config`, draining until the proxy starts listening; clusters that
    /// resolve names at start have their queries on the wire.
    pub(crate) fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Ctx {
        let clusters = Clusters::new(&config);
        let mut ctx = Ctx {
            config,
            shared,
            clock: Clock::new(now, wall),
            timers: Timers::default(),
            clusters,
            pools: Pools::default(),
            wire: Wire::default(),
            adopted: Vec::new(),
            deferred: Vec::new(),
            closing: Vec::new(),
            status_counters: Default::default(),
            rng: seed,
            draining: true,
        };
        let mut queries = Vec::new();
        ctx.clusters.start(now, &mut ctx.timers, &mut queries);
        for q in queries {
            ctx.wire.push(q);
        }
        ctx
    }

    /// Opens an upstream connection on behalf of `downstream`.
    pub(crate) fn connect(&mut self, downstream: ConnId, cluster: usize, addr: SocketAddr) -> ConnId {
        let id = self.wire.alloc();
        self.adopted.push((id, Owner::Tunnel { downstream, cluster }));
        self.wire.push(Output::Connect { conn: id, addr });
        id
    }

    /// A pooled connection switched protocols: it now belongs to `downstream`'s tunnel.
    pub(crate) fn adopt_upstream(&mut self, up: ConnId, downstream: ConnId, cluster: usize) {
        self.adopted.push((up, Owner::Tunnel { downstream, cluster }));
    }

    /// Runs a pool operation for `cluster` with its breakers, stats and limits.
    pub(crate) fn with_pool<R>(
        &mut self,
        cluster: usize,
        now: Instant,
        f: impl FnOnce(&mut Pools, &mut PoolCtx<'_>) -> R,
    ) -> R {
        let Ctx { shared, clusters, pools, wire, adopted, timers, deferred, closing, .. } = self;
        let mut io = PoolWire { wire, adopted, timers, deferred, closing };
        let mut cx = PoolCtx {
            breakers: &shared.breakers[cluster],
            stats: &shared.clusters[cluster],
            limits: clusters.pool_limits(cluster),
            now,
            io: &mut io,
        };
        f(pools, &mut cx)
    }

    /// A connection bound to `waiter`, a request that has gone: back to the pool, or to the
    /// next request waiting for it.
    pub(crate) fn give_back(&mut self, up: ConnId, waiter: StreamRef, now: Instant) -> Vec<(ConnId, Close)> {
        let Some(cluster) = self.pools.cluster_of(up) else { return Vec::new() };
        // Nothing was written on it yet, so it is as good as new.
        match self.with_pool(cluster, now, |p, cx| p.release(up, waiter, true, cx)) {
            Released::Rebound { waiter } => {
                self.defer(waiter, PoolEvent::Bound(up));
                Vec::new()
            }
            Released::Idle => Vec::new(),
            Released::Close => vec![(up, Close::Flush)],
        }
    }

    /// Queues a pool event for another downstream connection.
    pub(crate) fn defer(&mut self, waiter: StreamRef, event: PoolEvent) {
        self.deferred.push((waiter, event));
    }

    /// The `upstream_rq_<code>` counter of a cluster.
    pub(crate) fn upstream_status(&mut self, cluster: usize, status: u16) -> &Counter {
        let (shared, config) = (&self.shared, &self.config);
        self.status_counters.entry((cluster, status)).or_insert_with(|| {
            let name = &config.clusters[cluster].name;
            shared.stats.counter(&format!("cluster.{name}.upstream_rq_{status}"))
        })
    }

    /// 64 random bits from the worker's seeded generator (SplitMix64).
    pub(crate) fn random(&mut self) -> u128 {
        let mut next = || {
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (u128::from(next()) << 64) | u128::from(next())
    }

    /// Whether the proxy is shutting down (responses then carry `connection: close`).
    pub(crate) fn draining(&self) -> bool {
        self.draining
    }
}
