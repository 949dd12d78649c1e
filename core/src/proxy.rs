//! The one object a driver sees: it owns the machines and routes inputs to them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::downstream::admin_conn::AdminConn;
use crate::downstream::ctx::{Ctx, Owner};
use crate::downstream::session::Session;
use crate::io::{CloseKind, ConnId, Input, ListenerId, Output, QueryId, StreamRef};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::timers::Timer;
use crate::transport::ConnEvent;
use crate::transport::{Close, CLOSE_FLUSH_TIMEOUT};
use crate::upstream::cluster::QueryOwner;
use crate::upstream::pool::{PoolEvent, PoolOutput};
use smallvec::{smallvec, SmallVec};

/// A whole proxy worker: listeners, connections, clusters and timers.
///
/// Inputs go in through [`Proxy::accept`], [`Proxy::handle`] and [`Proxy::handle_timeout`];
/// work comes out of [`Proxy::poll_output`]; [`Proxy::poll_timeout`] says when to wake.
pub struct Proxy {
    ctx: Ctx,
    conns: Vec<Slot>,
    state: RunState,
    /// Downstream connections open.
    live: usize,
    /// Connections flushing before their close ([`Slot::Closing`]).
    closing: usize,
}

/// What lives under a connection id.
enum Slot {
    Free,
    /// Taken out while its machine runs (see [`Proxy::with_http`]).
    Busy,
    /// Closed by the core; the id is released when the driver pulls the `Close`.
    Closed,
    /// Its machine is gone; what was queued is being flushed before the `Close` (boxed: rare,
    /// and every slot is moved on the data path).
    Closing(Box<Closing>),
    Http(Box<Session>),
    Admin(Box<AdminConn>),
    /// The upstream side of a tunnel, owned by a downstream connection.
    Upstream {
        downstream: ConnId,
        cluster: usize,
    },
    /// An upstream HTTP/1.1 connection of the pool (its state lives in [`Ctx::pools`]).
    Pooled {
        cluster: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Waiting for the first DNS answers of DNS clusters before listening (Envoy's warming).
    Warming,
    Running,
    Draining,
    Finished,
}

/// A socket flushing before its close.
struct Closing {
    reset: bool,
    deadline: Instant,
    /// What counts the socket until it is really closed.
    held: Held,
}

/// The active-connection gauges and the `max_connections` unit of a socket that outlives its
/// machine while it flushes.
#[derive(Default)]
struct Held {
    gauges: SmallVec<[Gauge; 3]>,
    breaker: Option<usize>,
}

impl Held {
    fn take(&self, shared: &Shared) {
        self.gauges.iter().for_each(Gauge::inc);
        if let Some(cluster) = self.breaker {
            shared.breakers[cluster].connections.force_acquire();
        }
    }

    fn release(&self, shared: &Shared) {
        self.gauges.iter().for_each(Gauge::dec);
        if let Some(cluster) = self.breaker {
            shared.breakers[cluster].connections.release();
        }
    }
}

impl Proxy {
    /// `now` and `wall` anchor the core's clock (`wall` is only used for `date` headers);
    /// `seed` is the worker's entropy (request ids), so equal seeds give equal outputs.
    pub fn new(config: Arc<Config>, shared: Arc<Shared>, now: Instant, wall: SystemTime, seed: u64) -> Proxy {
        let ctx = Ctx::new(config, shared, now, wall, seed);
        let mut proxy = Proxy { ctx, conns: Vec::new(), state: RunState::Warming, live: 0, closing: 0 };
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
        let mut closes = Vec::new();
        let slot = if index < self.ctx.config.listeners.len() {
            let (session, opened) = Session::new(&mut self.ctx, now, id, index, peer, local);
            closes = opened;
            Slot::Http(Box::new(session))
        } else {
            Slot::Admin(Box::default())
        };
        self.conns[id.0 as usize] = slot;
        self.live += 1;
        self.apply(now, closes);
        if self.state != RunState::Running && self.state != RunState::Warming {
            // Accepted in the window before the driver saw our Unlisten: turn it away.
            self.release(now, id, Close::Abort);
        }
        id
    }

    /// Feed one event from the driver.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Data { conn, data } => self.dispatch(now, conn, ConnEvent::Data(data)),
            Input::ReadClosed { conn } => self.dispatch(now, conn, ConnEvent::ReadClosed),
            Input::Closed { conn, .. } => self.dispatch(now, conn, ConnEvent::Closed),
            Input::Connected { conn } => self.dispatch(now, conn, ConnEvent::Connected),
            Input::ConnectFailed { conn } => self.dispatch(now, conn, ConnEvent::ConnectFailed),
            Input::Flushed { conn, bytes } => {
                if self.ctx.wire.flushed(conn, bytes).is_some() {
                    self.dispatch(now, conn, ConnEvent::Flushed);
                }
            }
            Input::Resolved { query, addrs } => self.resolved(now, query, addrs),
            Input::ListenFailed { listener } => {
                tracing::error!(listener = listener.0, "listener failed to bind; stopping");
                self.set_state(RunState::Finished);
            }
        }
        self.settle();
    }

    /// The deadline from [`Proxy::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.ctx.timers.expired(now) {
            match timer {
                Timer::Http(conn) => {
                    if matches!(self.conns.get(conn.0 as usize), Some(Slot::Http(_))) {
                        self.with_http(now, conn, |http, ctx| http.on_timer(ctx, now));
                    }
                }
                Timer::Pool(conn) => self.pool_timer(now, conn),
                Timer::Closing(conn) => self.closing_timer(now, conn),
                Timer::DnsRefresh(cluster) => {
                    let queries = self.ctx.clusters.refresh(cluster, now, &mut self.ctx.timers);
                    queries.into_iter().for_each(|q| self.ctx.wire.push(q));
                }
                Timer::Drain => {
                    if self.state == RunState::Draining {
                        self.close_all(now);
                    }
                }
            }
        }
        self.settle();
    }

    /// The next piece of work for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.ctx.wire.pop()?;
        if let Output::Close { conn, .. } = output {
            // Only now may the id be reused: the driver has seen the close.
            self.conns[conn.0 as usize] = Slot::Free;
        }
        Some(output)
    }

    /// The earliest instant at which [`Proxy::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next()
    }

    /// Begin a graceful shutdown: stop accepting, let open connections finish for up to `drain`.
    pub fn shutdown(&mut self, now: Instant, drain: Duration) {
        if matches!(self.state, RunState::Draining | RunState::Finished) {
            return;
        }
        if self.state == RunState::Running {
            for listener in 0..self.listener_count() {
                self.ctx.wire.push(Output::Unlisten { listener: ListenerId(listener as u32) });
            }
        }
        self.set_state(RunState::Draining);
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
                self.release(now, ConnId(id as u32), Close::Flush);
            } else if matches!(self.conns[id], Slot::Http(_)) {
                self.with_http(now, ConnId(id as u32), |http, ctx| http.drain(ctx, now));
            }
        }
        self.settle();
    }

    /// True once shut down and every connection is gone (or a listener failed to bind).
    pub fn is_finished(&self) -> bool {
        self.state == RunState::Finished && self.ctx.wire.is_empty()
    }

    fn listener_count(&self) -> usize {
        self.ctx.config.listeners.len() + usize::from(self.ctx.config.admin.is_some())
    }

    /// Starts the listeners once no DNS cluster is still waiting for its first answer.
    fn maybe_listen(&mut self) {
        if self.state != RunState::Warming || !self.ctx.clusters.warm() {
            return;
        }
        self.set_state(RunState::Running);
        let config = self.ctx.config.clone();
        let admin = config.admin.iter().map(|a| a.address);
        for (i, addr) in config.listeners.iter().map(|l| l.address).chain(admin).enumerate() {
            self.ctx.wire.push(Output::Listen { listener: ListenerId(i as u32), addr });
        }
    }

    fn alloc(&mut self) -> ConnId {
        let id = self.ctx.wire.alloc();
        if self.conns.len() <= id.0 as usize {
            self.conns.resize_with(id.0 as usize + 1, || Slot::Free);
        }
        id
    }

    fn resolved(&mut self, now: Instant, query: QueryId, addrs: Vec<std::net::IpAddr>) {
        match self.ctx.clusters.resolved(query, &addrs) {
            Some(QueryOwner::Cluster) => self.maybe_listen(),
            Some(QueryOwner::Conn(conn, kept)) => {
                if matches!(self.conns.get(conn.0 as usize), Some(Slot::Http(_))) {
                    self.with_http(now, conn, |http, ctx| http.on_resolved(ctx, now, query, kept));
                }
            }
            None => {}
        }
    }

    /// Routes a connection event to the machine that owns the connection.
    fn dispatch(&mut self, now: Instant, conn: ConnId, event: ConnEvent) {
        let Some(slot) = self.conns.get_mut(conn.0 as usize) else { return };
        match slot {
            Slot::Http(_) => self.with_http(now, conn, |http, ctx| http.on_downstream(ctx, now, event)),
            Slot::Upstream { downstream, .. } => {
                let downstream = *downstream;
                self.with_http(now, downstream, |http, ctx| http.on_upstream(ctx, now, conn, event))
            }
            Slot::Pooled { .. } => self.pooled_event(now, conn, event),
            Slot::Admin(admin) => {
                let admin_state = if self.state == RunState::Running {
                    crate::admin::ServerState::Live
                } else {
                    crate::admin::ServerState::Draining
                };
                if let Some(kind) = admin.on_event(&mut self.ctx, now, conn, event, admin_state) {
                    self.release(now, conn, kind);
                }
            }
            Slot::Closing(_) => self.closing_event(now, conn, event),
            Slot::Free | Slot::Busy | Slot::Closed => {}
        }
    }

    /// An event on a pooled upstream connection: the pool and the connection's codec make of
    /// it what they will; the streams concerned hear the result.
    fn pooled_event(&mut self, now: Instant, conn: ConnId, event: ConnEvent) {
        let Some(cluster) = self.ctx.pools.cluster_of(conn) else { return };
        let out = self.ctx.with_pool(cluster, now, |p, cx| p.on_event(conn, event, cx));
        self.apply_pool(now, conn, out);
    }

    fn pool_timer(&mut self, now: Instant, conn: ConnId) {
        if !matches!(self.conns.get(conn.0 as usize), Some(Slot::Pooled { .. })) {
            return;
        }
        let Some(cluster) = self.ctx.pools.cluster_of(conn) else { return };
        let out = self.ctx.with_pool(cluster, now, |p, cx| p.on_timer(conn, cx));
        self.apply_pool(now, conn, out);
    }

    /// Closes a pooled connection if the pool said so, and tells the streams. A response that
    /// ends with the connection (read until close) is delivered before the close.
    fn apply_pool(&mut self, now: Instant, conn: ConnId, out: PoolOutput) {
        let PoolOutput { events, close } = out;
        let response_first = events.iter().any(|(_, e)| matches!(e, PoolEvent::Response(_)));
        if !response_first {
            if let Some(kind) = close {
                self.release(now, conn, kind);
            }
        }
        for (waiter, event) in events {
            self.deliver(now, waiter, event);
        }
        if response_first {
            if let Some(kind) = close {
                self.release(now, conn, kind);
            }
        }
    }

    /// Hands a pool event to the stream it is for.
    fn deliver(&mut self, now: Instant, waiter: StreamRef, event: PoolEvent) {
        if matches!(self.conns.get(waiter.conn.0 as usize), Some(Slot::Http(_))) {
            self.with_http(now, waiter.conn, |http, ctx| http.on_pool(ctx, now, waiter.stream, event));
        } else if let PoolEvent::Bound(up) = event {
            // The request went away before its connection came: the connection goes back.
            let closes = self.ctx.give_back(up, waiter, now);
            self.apply(now, closes);
        }
    }

    /// Runs an HTTP connection's machine with the whole context at hand, then applies what it
    /// asked for: slot changes, ids to close, and pool events for other connections.
    fn with_http(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut Session, &mut Ctx) -> Vec<(ConnId, Close)>,
    ) {
        let Slot::Http(mut http) = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Busy) else {
            unreachable!("with_http on a non-HTTP slot")
        };
        let closes = f(&mut http, &mut self.ctx);
        self.conns[conn.0 as usize] = Slot::Http(http);
        self.apply(now, closes);
    }

    /// Applies what a machine asked for.
    fn apply(&mut self, now: Instant, closes: Vec<(ConnId, Close)>) {
        for (id, owner) in std::mem::take(&mut self.ctx.adopted) {
            if self.conns.len() <= id.0 as usize {
                self.conns.resize_with(id.0 as usize + 1, || Slot::Free);
            }
            self.conns[id.0 as usize] = match owner {
                Owner::Tunnel { downstream, cluster } => Slot::Upstream { downstream, cluster },
                Owner::Pool { cluster } => Slot::Pooled { cluster },
            };
        }
        for (id, kind) in closes.into_iter().chain(std::mem::take(&mut self.ctx.closing)) {
            self.release(now, id, kind);
        }
        for (waiter, event) in std::mem::take(&mut self.ctx.deferred) {
            self.deliver(now, waiter, event);
        }
    }

    /// Retires a connection's machine and ends the connection as `close` says.
    fn release(&mut self, now: Instant, conn: ConnId, close: Close) {
        let slot = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Closed);
        let held = self.held(&slot);
        let mut also = Vec::new();
        match slot {
            Slot::Free | Slot::Closed => {
                self.conns[conn.0 as usize] = slot;
                return;
            }
            Slot::Closing(closing) => {
                let held = closing.held;
                // Flushing was not enough (the drain is over, or the peer went away).
                self.closing -= 1;
                self.ctx.wire.close(conn, CloseKind::Abort);
                self.unhold(now, held);
                return;
            }
            Slot::Http(http) => {
                also = (*http).finish(&mut self.ctx, now);
                self.live -= 1;
            }
            Slot::Admin(_) => self.live -= 1,
            Slot::Pooled { .. } => {
                if let Some(cluster) = self.ctx.pools.cluster_of(conn) {
                    let failed = self.ctx.with_pool(cluster, now, |p, cx| p.closed(conn, false, cx));
                    for waiter in failed {
                        self.ctx.defer(waiter, PoolEvent::UpstreamGone);
                    }
                }
            }
            Slot::Upstream { .. } | Slot::Busy => {}
        }
        let reset = match close {
            Close::Abort => None,
            Close::Flush => Some(false),
            Close::FlushThenReset => Some(true),
        };
        match reset {
            Some(reset) if self.ctx.wire.queued(conn) > 0 => {
                // Nothing more is read from it; its bytes drain, then it closes. Its machine
                // has settled its gauges and breaker unit; the socket holds them again until
                // it is closed, as Envoy counts a connection until its socket closes.
                self.ctx.wire.pause_read(conn);
                let deadline = now + CLOSE_FLUSH_TIMEOUT;
                self.ctx.timers.set(deadline, Timer::Closing(conn));
                held.take(&self.ctx.shared);
                self.conns[conn.0 as usize] = Slot::Closing(Box::new(Closing { reset, deadline, held }));
                self.closing += 1;
            }
            Some(false) => self.ctx.wire.close(conn, CloseKind::Flush),
            _ => self.ctx.wire.close(conn, CloseKind::Abort),
        }
        self.apply(now, also);
    }

    /// A closing socket is closed: its gauges drop, and the `max_connections` unit it held
    /// goes to requests of its cluster waiting for a connection to be opened.
    fn unhold(&mut self, now: Instant, held: Held) {
        held.release(&self.ctx.shared);
        if let Some(cluster) = held.breaker {
            self.ctx.with_pool(cluster, now, |p, cx| p.wake_cluster(cluster, cx));
            self.apply(now, Vec::new());
        }
    }

    /// What counts a connection's socket while it is open.
    fn held(&self, slot: &Slot) -> Held {
        let shared = &self.ctx.shared;
        match slot {
            Slot::Http(http) => Held { gauges: http.socket_gauges(shared), breaker: None },
            Slot::Upstream { cluster, .. } | Slot::Pooled { cluster } => Held {
                gauges: smallvec![shared.clusters[*cluster].upstream_cx_active.clone()],
                breaker: Some(*cluster),
            },
            _ => Held::default(),
        }
    }

    /// An event on a connection whose bytes are draining before its close.
    fn closing_event(&mut self, now: Instant, conn: ConnId, event: ConnEvent) {
        let Slot::Closing(closing) = &mut self.conns[conn.0 as usize] else { return };
        match event {
            ConnEvent::Flushed if self.ctx.wire.queued(conn) == 0 => {
                let kind = if closing.reset { CloseKind::Abort } else { CloseKind::Flush };
                self.closing -= 1;
                self.ctx.wire.close(conn, kind);
                if let Slot::Closing(closing) =
                    std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Closed)
                {
                    self.unhold(now, closing.held);
                }
            }
            ConnEvent::Flushed => closing.deadline = now + CLOSE_FLUSH_TIMEOUT,
            ConnEvent::Closed => self.release(now, conn, Close::Abort),
            _ => {}
        }
    }

    /// A closing connection's flush deadline: reset it if it made no progress since.
    fn closing_timer(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get(conn.0 as usize) {
            Some(Slot::Closing(closing)) if closing.deadline <= now => self.release(now, conn, Close::Abort),
            Some(Slot::Closing(closing)) => self.ctx.timers.set(closing.deadline, Timer::Closing(conn)),
            _ => {}
        }
    }

    /// Forcibly ends every connection (the drain period is over).
    fn close_all(&mut self, now: Instant) {
        for id in 0..self.conns.len() {
            let open = matches!(
                self.conns[id],
                Slot::Http(_) | Slot::Admin(_) | Slot::Pooled { .. } | Slot::Closing(_)
            );
            if open {
                self.release(now, ConnId(id as u32), Close::Abort);
            }
        }
    }

    fn set_state(&mut self, state: RunState) {
        self.state = state;
        self.ctx.draining = state != RunState::Running;
    }

    fn settle(&mut self) {
        if self.state == RunState::Draining && self.live == 0 && self.closing == 0 {
            self.set_state(RunState::Finished);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

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

    /// `AUTO` decides on the first bytes, however they are split: the HTTP/2 preface in two
    /// reads is HTTP/2 (the proxy answers with its SETTINGS), a `P` that turns into `POST` is
    /// HTTP/1.1.
    #[test]
    fn auto_tells_the_preface_from_a_post_across_split_reads() {
        let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
        let shared = Arc::new(Shared::new(&config));
        let now = burrow_sim::epoch();
        let mut proxy = Proxy::new(config, shared.clone(), now, SystemTime::UNIX_EPOCH, 1);
        drain(&mut proxy, now);
        let (peer, local) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:10000".parse().unwrap());
        let h2 = proxy.accept(now, ListenerId(0), peer, local);
        proxy.handle(now, Input::Data { conn: h2, data: Bytes::from_static(b"PRI * HTTP/2.0\r\n") });
        assert!(drain(&mut proxy, now).is_empty(), "nothing is said before the protocol is known");
        proxy.handle(
            now,
            Input::Data { conn: h2, data: Bytes::from_static(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0") },
        );
        let said = drain(&mut proxy, now);
        assert!(
            said.iter().any(|o| matches!(o, Output::Write { conn, data } if *conn == h2 && data[3] == 4)),
            "HTTP/2 SETTINGS: {said:?}"
        );
        let h1 = proxy.accept(now, ListenerId(0), peer, local);
        proxy.handle(now, Input::Data { conn: h1, data: Bytes::from_static(b"P") });
        proxy.handle(
            now,
            Input::Data {
                conn: h1,
                data: Bytes::from_static(b"OST / HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\nx"),
            },
        );
        let said = drain(&mut proxy, now);
        assert!(said.iter().any(|o| matches!(o, Output::Connect { .. })), "forwarded as HTTP/1.1: {said:?}");
        assert_eq!(shared.stats.value("http.ingress_http.downstream_cx_http2_total"), Some(1));
        assert_eq!(shared.stats.value("http.ingress_http.downstream_cx_http1_total"), Some(1));
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
