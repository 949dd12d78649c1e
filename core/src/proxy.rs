//! The one object a driver sees: it owns the machines and routes inputs to them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::admin_conn::AdminConn;
use crate::clock::Clock;
use crate::cluster::{Clusters, QueryOwner};
use crate::config::Config;
use crate::http_conn::HttpConn;
use crate::io::{CloseKind, ConnId, Input, ListenerId, Output, QueryId};
use crate::local_reply;
use crate::pool::{Expired, PoolCtx, PoolIo, Pools, Released};
use crate::shared::Shared;
use crate::stats::Counter;
use crate::timers::{Timer, Timers};
use crate::upstream_h1::{UpEvent, UpEvents};

/// A whole proxy worker: listeners, connections, clusters and timers.
///
/// Inputs go in through [`Proxy::accept`], [`Proxy::handle`] and [`Proxy::handle_timeout`];
/// work comes out of [`Proxy::poll_output`]; [`Proxy::poll_timeout`] says when to wake.
pub struct Proxy {
    ctx: Ctx,
    conns: Vec<Slot>,
}

/// What lives under a connection id.
enum Slot {
    Free,
    /// Taken out while its machine runs (see [`Proxy::with_http`]).
    Busy,
    /// Closed by the core; the id is released when the driver pulls the `Close`.
    Closed,
    Http(Box<HttpConn>),
    Admin(Box<AdminConn>),
    /// The upstream side of a tunnel, owned by a downstream connection.
    Upstream {
        downstream: ConnId,
    },
    /// An upstream HTTP/1.1 connection of the pool (its state lives in [`Ctx::pools`]).
    Pooled,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Waiting for the first DNS answers of DNS clusters before listening (Envoy's warming).
    Warming,
    Running,
    Draining,
    Finished,
}

/// Everything a machine may touch besides its own state.
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: Clock,
    pub(crate) timers: Timers,
    pub(crate) clusters: Clusters,
    pub(crate) pools: Pools,
    out: VecDeque<Output>,
    io: Vec<ConnIo>,
    free: Vec<u32>,
    /// Slot changes made while a machine ran (new upstream connections, a pooled connection
    /// turned tunnel), applied when it returns.
    slot_updates: Vec<(ConnId, Slot)>,
    /// Pool events for other downstream connections, delivered when the running machine
    /// returns.
    deferred: Vec<(ConnId, PoolEvent)>,
    /// `upstream_rq_<code>` handles, made on first use of each code.
    status_counters: rustc_hash::FxHashMap<(usize, u16), Counter>,
    /// SplitMix64 state: request ids without an OS random source.
    rng: u64,
    state: RunState,
    live: usize,
}

/// Per-connection write accounting for back-pressure.
#[derive(Default, Clone, Copy)]
struct ConnIo {
    /// Bytes handed to the driver and not yet reported flushed.
    queued: usize,
    read_paused: bool,
}

impl Proxy {
    /// `now` and `wall` anchor the core's clock (`wall` is only used for `date` headers);
    /// `seed` is the worker's entropy (request ids), so equal seeds give equal outputs.
    pub fn new(config: Arc<Config>, shared: Arc<Shared>, now: Instant, wall: SystemTime, seed: u64) -> Proxy {
        let clusters = Clusters::new(&config);
        let mut ctx = Ctx {
            config,
            shared,
            clock: Clock::new(now, wall),
            timers: Timers::default(),
            clusters,
            pools: Pools::default(),
            out: VecDeque::new(),
            io: Vec::new(),
            free: Vec::new(),
            slot_updates: Vec::new(),
            deferred: Vec::new(),
            status_counters: Default::default(),
            rng: seed,
            state: RunState::Warming,
            live: 0,
        };
        let mut queries = Vec::new();
        ctx.clusters.start(now, &mut ctx.timers, &mut queries);
        for q in queries {
            ctx.out.push_back(q);
        }
        let mut proxy = Proxy { ctx, conns: Vec::new() };
        proxy.maybe_listen();
        proxy
    }

    /// A listener accepted a connection; the returned id names it from now on.
    pub fn accept(
        &mut self,
        now: Instant,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> ConnId {
        let id = self.alloc();
        let index = listener.0 as usize;
        let slot = if index < self.ctx.config.listeners.len() {
            Slot::Http(Box::new(HttpConn::new(&mut self.ctx, now, id, index, peer, local)))
        } else {
            Slot::Admin(Box::default())
        };
        self.conns[id.0 as usize] = slot;
        self.ctx.live += 1;
        if self.ctx.state != RunState::Running && self.ctx.state != RunState::Warming {
            // Accepted in the window before the driver saw our Unlisten: turn it away.
            self.release(now, id, CloseKind::Abort);
        }
        id
    }

    /// Feed one event from the driver.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Data { conn, data } => self.dispatch(now, conn, Event::Data(data)),
            Input::ReadClosed { conn } => self.dispatch(now, conn, Event::ReadClosed),
            Input::Closed { conn, .. } => self.dispatch(now, conn, Event::Closed),
            Input::Connected { conn } => self.dispatch(now, conn, Event::Connected),
            Input::ConnectFailed { conn } => self.dispatch(now, conn, Event::ConnectFailed),
            Input::Flushed { conn, bytes } => {
                let Some(io) = self.ctx.io.get_mut(conn.0 as usize) else { return };
                io.queued = io.queued.saturating_sub(bytes);
                self.dispatch(now, conn, Event::Flushed);
            }
            Input::Resolved { query, addrs } => self.resolved(now, query, addrs),
            Input::ListenFailed { listener } => {
                tracing::error!(listener = listener.0, "listener failed to bind; stopping");
                self.ctx.state = RunState::Finished;
            }
        }
        self.settle();
    }

    /// The deadline from [`Proxy::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.ctx.timers.expired(now) {
            match timer {
                Timer::Http(conn) => self.dispatch(now, conn, Event::Timer),
                Timer::Pool(conn) => self.pool_timer(now, conn),
                Timer::DnsRefresh(cluster) => {
                    let queries = self.ctx.clusters.refresh(cluster, now, &mut self.ctx.timers);
                    self.ctx.out.extend(queries);
                }
                Timer::Drain => {
                    if self.ctx.state == RunState::Draining {
                        self.close_all(now);
                    }
                }
            }
        }
        self.settle();
    }

    /// The next piece of work for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.ctx.out.pop_front()?;
        if let Output::Close { conn, .. } = output {
            // Only now may the id be reused: the driver has seen the close.
            self.conns[conn.0 as usize] = Slot::Free;
            self.ctx.io[conn.0 as usize] = ConnIo::default();
            self.ctx.free.push(conn.0);
        }
        Some(output)
    }

    /// The earliest instant at which [`Proxy::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next()
    }

    /// Begin a graceful shutdown: stop accepting, let open connections finish for up to `drain`.
    pub fn shutdown(&mut self, now: Instant, drain: Duration) {
        if matches!(self.ctx.state, RunState::Draining | RunState::Finished) {
            return;
        }
        if self.ctx.state == RunState::Running {
            for listener in 0..self.listener_count() {
                self.ctx.out.push_back(Output::Unlisten { listener: ListenerId(listener as u32) });
            }
        }
        self.ctx.state = RunState::Draining;
        self.ctx.timers.set(now + drain, Timer::Drain);
        // Idle keep-alive connections have nothing left to finish; busy ones close after
        // their response (responses then carry `connection: close`).
        for id in 0..self.conns.len() {
            let idle = match &self.conns[id] {
                Slot::Admin(admin) => admin.is_idle(),
                Slot::Http(http) => http.is_idle(),
                _ => false,
            };
            if idle {
                self.release(now, ConnId(id as u32), CloseKind::Flush);
            }
        }
        self.settle();
    }

    /// True once shut down and every connection is gone (or a listener failed to bind).
    pub fn is_finished(&self) -> bool {
        self.ctx.state == RunState::Finished && self.ctx.out.is_empty()
    }

    fn listener_count(&self) -> usize {
        self.ctx.config.listeners.len() + usize::from(self.ctx.config.admin.is_some())
    }

    /// Starts the listeners once no DNS cluster is still waiting for its first answer.
    fn maybe_listen(&mut self) {
        if self.ctx.state != RunState::Warming || !self.ctx.clusters.warm() {
            return;
        }
        self.ctx.state = RunState::Running;
        let config = self.ctx.config.clone();
        let admin = config.admin.iter().map(|a| a.address);
        for (i, addr) in config.listeners.iter().map(|l| l.address).chain(admin).enumerate() {
            self.ctx.out.push_back(Output::Listen { listener: ListenerId(i as u32), addr });
        }
    }

    fn alloc(&mut self) -> ConnId {
        let id = self.ctx.alloc();
        if self.conns.len() <= id.0 as usize {
            self.conns.resize_with(id.0 as usize + 1, || Slot::Free);
        }
        id
    }

    fn resolved(&mut self, now: Instant, query: QueryId, addrs: Vec<std::net::IpAddr>) {
        match self.ctx.clusters.resolved(query, &addrs) {
            Some(QueryOwner::Cluster) => self.maybe_listen(),
            Some(QueryOwner::Conn(conn, kept)) => self.dispatch(now, conn, Event::Resolved(query, kept)),
            None => {}
        }
    }

    /// Routes a connection event to the machine that owns the connection.
    fn dispatch(&mut self, now: Instant, conn: ConnId, event: Event) {
        let Some(slot) = self.conns.get_mut(conn.0 as usize) else { return };
        match slot {
            Slot::Http(_) => self.with_http(now, conn, |http, ctx| http.on_downstream(ctx, now, event)),
            Slot::Upstream { downstream } => {
                let downstream = *downstream;
                self.with_http(now, downstream, |http, ctx| http.on_upstream(ctx, now, event))
            }
            Slot::Pooled => self.pooled_event(now, conn, event),
            Slot::Admin(admin) => {
                let admin_state = if self.ctx.state == RunState::Running {
                    crate::admin::ServerState::Live
                } else {
                    crate::admin::ServerState::Draining
                };
                if let Some(kind) = admin.on_event(&mut self.ctx, now, conn, event, admin_state) {
                    self.release(now, conn, kind);
                }
            }
            Slot::Free | Slot::Busy | Slot::Closed => {}
        }
    }

    /// An event on a pooled upstream connection: the pool's bookkeeping, then the request
    /// bound to it (if any) hears what it means.
    fn pooled_event(&mut self, now: Instant, conn: ConnId, event: Event) {
        let Some(cluster) = self.ctx.pools.cluster_of(conn) else { return };
        let bound = self.ctx.pools.bound(conn);
        match event {
            Event::Connected => {
                if let Some(waiter) = self.ctx.with_pool(cluster, now, |p, cx| p.connected(conn, cx)) {
                    self.deliver(now, waiter, PoolEvent::Bound(conn));
                }
            }
            Event::ConnectFailed => {
                let failed = self.ctx.with_pool(cluster, now, |p, cx| p.closed(conn, true, cx));
                self.release(now, conn, CloseKind::Abort);
                if let Some(waiter) = failed {
                    self.deliver(now, waiter, PoolEvent::Failed(local_reply::CONNECT_FAILURE));
                }
            }
            Event::Data(data) => {
                let mut events = UpEvents::new();
                if let Some(pooled) = self.ctx.pools.conn_mut(conn) {
                    pooled.reader.read(data, &mut events);
                }
                match bound {
                    Some(waiter) => self.deliver(now, waiter, PoolEvent::Response(events)),
                    // Bytes on an idle connection: the upstream is confused; drop it.
                    None if events.iter().any(|e| matches!(e, UpEvent::Error)) => {
                        self.release(now, conn, CloseKind::Abort);
                    }
                    None => {}
                }
            }
            Event::ReadClosed | Event::Closed => {
                let mut events = UpEvents::new();
                let clean = matches!(event, Event::ReadClosed)
                    && self.ctx.pools.conn_mut(conn).is_some_and(|pooled| pooled.reader.eof(&mut events));
                match bound {
                    // The close ended a read-until-close body: the response completes.
                    Some(waiter) if clean && !events.is_empty() => {
                        self.deliver(now, waiter, PoolEvent::Response(events));
                        self.release(now, conn, CloseKind::Flush);
                    }
                    Some(waiter) => {
                        self.ctx.with_pool(cluster, now, |p, cx| p.closed(conn, true, cx));
                        self.release(now, conn, CloseKind::Abort);
                        self.deliver(now, waiter, PoolEvent::UpstreamGone);
                    }
                    None => {
                        self.ctx.with_pool(cluster, now, |p, cx| p.closed(conn, true, cx));
                        self.release(now, conn, CloseKind::Flush);
                    }
                }
            }
            Event::Flushed => {
                if let Some(waiter) = bound {
                    self.deliver(now, waiter, PoolEvent::UpstreamFlushed);
                }
            }
            Event::Timer | Event::Resolved(..) => {}
        }
    }

    fn pool_timer(&mut self, now: Instant, conn: ConnId) {
        if !matches!(self.conns.get(conn.0 as usize), Some(Slot::Pooled)) {
            return;
        }
        let Some(cluster) = self.ctx.pools.cluster_of(conn) else { return };
        match self.ctx.with_pool(cluster, now, |p, cx| p.expired(conn, cx)) {
            Expired::Connect { failed } => {
                self.release(now, conn, CloseKind::Abort);
                if let Some(waiter) = failed {
                    self.deliver(now, waiter, PoolEvent::Failed(local_reply::CONNECT_TIMEOUT));
                }
            }
            Expired::Idle => self.release(now, conn, CloseKind::Flush),
            Expired::Nothing => {}
        }
    }

    /// Hands a pool event to a downstream connection's request.
    fn deliver(&mut self, now: Instant, waiter: ConnId, event: PoolEvent) {
        if matches!(self.conns.get(waiter.0 as usize), Some(Slot::Http(_))) {
            self.with_http(now, waiter, |http, ctx| http.on_pool(ctx, now, event));
        } else if let PoolEvent::Bound(up) = event {
            // The request went away before its connection came: the connection goes back.
            let closes = self.ctx.give_back(up, now);
            self.apply(now, closes);
        }
    }

    /// Runs an HTTP connection's machine with the whole context at hand, then applies what it
    /// asked for: slot changes, ids to close, and pool events for other connections.
    fn with_http(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut HttpConn, &mut Ctx) -> Vec<(ConnId, CloseKind)>,
    ) {
        let Slot::Http(mut http) = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Busy) else {
            unreachable!("with_http on a non-HTTP slot")
        };
        let closes = f(&mut http, &mut self.ctx);
        self.conns[conn.0 as usize] = Slot::Http(http);
        self.apply(now, closes);
    }

    /// Applies what a machine asked for.
    fn apply(&mut self, now: Instant, closes: Vec<(ConnId, CloseKind)>) {
        for (id, slot) in std::mem::take(&mut self.ctx.slot_updates) {
            if self.conns.len() <= id.0 as usize {
                self.conns.resize_with(id.0 as usize + 1, || Slot::Free);
            }
            self.conns[id.0 as usize] = slot;
        }
        for (id, kind) in closes {
            self.release(now, id, kind);
        }
        for (waiter, event) in std::mem::take(&mut self.ctx.deferred) {
            self.deliver(now, waiter, event);
        }
    }

    /// Emits the one `Close` for an id and retires its machine.
    fn release(&mut self, now: Instant, conn: ConnId, kind: CloseKind) {
        let slot = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Closed);
        let mut also = Vec::new();
        match slot {
            Slot::Free | Slot::Closed => {
                self.conns[conn.0 as usize] = slot;
                return;
            }
            Slot::Http(http) => {
                also = http.finish(&mut self.ctx, now);
                self.ctx.live -= 1;
            }
            Slot::Admin(_) => self.ctx.live -= 1,
            Slot::Pooled => {
                if let Some(cluster) = self.ctx.pools.cluster_of(conn) {
                    let failed = self.ctx.with_pool(cluster, now, |p, cx| p.closed(conn, false, cx));
                    debug_assert!(failed.is_none() || kind == CloseKind::Abort);
                    if let Some(waiter) = failed {
                        self.ctx.defer(waiter, PoolEvent::UpstreamGone);
                    }
                }
            }
            Slot::Upstream { .. } | Slot::Busy => {}
        }
        self.ctx.out.push_back(Output::Close { conn, kind });
        self.apply(now, also);
    }

    /// Forcibly ends every connection (the drain period is over).
    fn close_all(&mut self, now: Instant) {
        for id in 0..self.conns.len() {
            if matches!(self.conns[id], Slot::Http(_) | Slot::Admin(_) | Slot::Pooled) {
                self.release(now, ConnId(id as u32), CloseKind::Abort);
            }
        }
    }

    fn settle(&mut self) {
        if self.ctx.state == RunState::Draining && self.ctx.live == 0 {
            self.ctx.state = RunState::Finished;
        }
    }
}

/// One connection event, as seen by the machine that owns the connection.
pub(crate) enum Event {
    Data(Bytes),
    ReadClosed,
    /// Reset or failed.
    Closed,
    Connected,
    ConnectFailed,
    Flushed,
    /// The answer to this connection's name resolution, narrowed to its cluster's
    /// `dns_lookup_family`.
    Resolved(QueryId, Vec<std::net::IpAddr>),
    /// The connection's timer fired; it checks its own deadlines.
    Timer,
}

/// What the HTTP pool tells the downstream connection whose request it serves.
pub(crate) enum PoolEvent {
    /// This connection now carries the request.
    Bound(ConnId),
    /// No connection could be had: answer 503 with this text.
    Failed(&'static str),
    /// The response, as read so far.
    Response(UpEvents),
    /// The upstream drained what was written to it.
    UpstreamFlushed,
    /// The connection died under the request.
    UpstreamGone,
}

impl PoolIo for Ctx {
    fn open(&mut self, addr: SocketAddr) -> ConnId {
        let id = self.alloc();
        self.slot_updates.push((id, Slot::Pooled));
        self.out.push_back(Output::Connect { conn: id, addr });
        id
    }

    fn timer(&mut self, conn: ConnId, at: Instant) {
        self.timers.set(at, Timer::Pool(conn));
    }
}

impl Ctx {
    fn alloc(&mut self) -> ConnId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.io.push(ConnIo::default());
                (self.io.len() - 1) as u32
            }
        };
        ConnId(id)
    }

    /// Opens an upstream connection on behalf of `downstream`.
    pub(crate) fn connect(&mut self, downstream: ConnId, addr: SocketAddr) -> ConnId {
        let id = self.alloc();
        self.slot_updates.push((id, Slot::Upstream { downstream }));
        self.out.push_back(Output::Connect { conn: id, addr });
        id
    }

    /// A pooled connection switched protocols: it now belongs to `downstream`'s tunnel.
    pub(crate) fn adopt_upstream(&mut self, up: ConnId, downstream: ConnId) {
        self.slot_updates.push((up, Slot::Upstream { downstream }));
    }

    /// Runs a pool operation for `cluster` with its breakers, stats and limits.
    pub(crate) fn with_pool<R>(
        &mut self,
        cluster: usize,
        now: Instant,
        f: impl FnOnce(&mut Pools, &mut PoolCtx<'_>) -> R,
    ) -> R {
        let mut pools = std::mem::take(&mut self.pools);
        let shared = self.shared.clone();
        let limits = self.clusters.pool_limits(cluster);
        let mut cx = PoolCtx {
            breakers: &shared.breakers[cluster],
            stats: &shared.clusters[cluster],
            limits,
            now,
            io: self,
        };
        let result = f(&mut pools, &mut cx);
        self.pools = pools;
        result
    }

    /// A connection bound to a request that has gone: back to the pool, or to the next
    /// request waiting for it.
    pub(crate) fn give_back(&mut self, up: ConnId, now: Instant) -> Vec<(ConnId, CloseKind)> {
        let Some(cluster) = self.pools.cluster_of(up) else { return Vec::new() };
        // Nothing was written on it yet, so it is as good as new.
        match self.with_pool(cluster, now, |p, cx| p.release(up, true, cx)) {
            Released::Rebound { waiter } => {
                self.defer(waiter, PoolEvent::Bound(up));
                Vec::new()
            }
            Released::Idle => Vec::new(),
            Released::Close => vec![(up, CloseKind::Flush)],
        }
    }

    /// Queues a pool event for another downstream connection.
    pub(crate) fn defer(&mut self, waiter: ConnId, event: PoolEvent) {
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

    pub(crate) fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }

    /// Queues bytes for a connection and counts them against its buffer limit.
    pub(crate) fn write(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.io[conn.0 as usize].queued += data.len();
        self.out.push_back(Output::Write { conn, data });
    }

    /// Bytes written to `conn` that the driver has not yet flushed.
    pub(crate) fn queued(&self, conn: ConnId) -> usize {
        self.io[conn.0 as usize].queued
    }

    pub(crate) fn pause_read(&mut self, conn: ConnId) {
        let io = &mut self.io[conn.0 as usize];
        if !io.read_paused {
            io.read_paused = true;
            self.out.push_back(Output::PauseRead { conn });
        }
    }

    pub(crate) fn resume_read(&mut self, conn: ConnId) {
        let io = &mut self.io[conn.0 as usize];
        if io.read_paused {
            io.read_paused = false;
            self.out.push_back(Output::ResumeRead { conn });
        }
    }

    /// Whether the proxy is shutting down (responses then carry `connection: close`).
    pub(crate) fn draining(&self) -> bool {
        self.state != RunState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("../../configs/reverse_proxy.yaml");

    fn drain(proxy: &mut Proxy, now: Instant) -> Vec<Output> {
        let mut outputs = Vec::new();
        while let Some(output) = proxy.poll_output() {
            if let Output::Write { conn, data } = &output {
                proxy.handle(now, Input::Flushed { conn: *conn, bytes: data.len() });
            }
            outputs.push(output);
        }
        outputs
    }

    /// Deadlines that move with every request (route timeout, stream and pool idle timeouts)
    /// must not leave one timer-table entry per request behind.
    #[test]
    fn the_timer_table_stays_small_under_many_requests() {
        let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
        let shared = Arc::new(Shared::new(&config));
        let mut now = burrow_sim::epoch();
        let mut proxy = Proxy::new(config, shared, now, SystemTime::UNIX_EPOCH, 1);
        drain(&mut proxy, now);
        let client = proxy.accept(
            now,
            ListenerId(0),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:10000".parse().unwrap(),
        );
        let request = Bytes::from_static(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let response = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let mut upstream = None;
        for _ in 0..10_000 {
            now += Duration::from_millis(1);
            proxy.handle(now, Input::Data { conn: client, data: request.clone() });
            for output in drain(&mut proxy, now) {
                if let Output::Connect { conn, .. } = output {
                    upstream = Some(conn);
                    proxy.handle(now, Input::Connected { conn });
                    drain(&mut proxy, now);
                }
            }
            proxy.handle(now, Input::Data { conn: upstream.unwrap(), data: response.clone() });
            drain(&mut proxy, now);
            if proxy.poll_timeout().is_some_and(|at| at <= now) {
                proxy.handle_timeout(now);
                drain(&mut proxy, now);
            }
        }
        assert!(proxy.ctx.timers.len() < 100, "{} timers for two connections", proxy.ctx.timers.len());
    }
}
