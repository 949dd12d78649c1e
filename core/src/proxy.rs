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
use crate::io::{CloseKind, CloseReason, ConnId, Input, ListenerId, Output, QueryId};
use crate::shared::Shared;
use crate::timers::{Timer, Timers};

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
    out: VecDeque<Output>,
    io: Vec<ConnIo>,
    free: Vec<u32>,
    /// Upstream connections opened while a machine ran, put in their slots when it returns.
    new_conns: Vec<(ConnId, Slot)>,
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
    /// `now` and `wall` anchor the core's clock: `wall` is only used for `date` headers.
    pub fn new(config: Arc<Config>, shared: Arc<Shared>, now: Instant, wall: SystemTime) -> Proxy {
        let clusters = Clusters::new(&config);
        let mut ctx = Ctx {
            config,
            shared,
            clock: Clock::new(now, wall),
            timers: Timers::default(),
            clusters,
            out: VecDeque::new(),
            io: Vec::new(),
            free: Vec::new(),
            new_conns: Vec::new(),
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
        let _ = (now, peer);
        let id = self.alloc();
        let index = listener.0 as usize;
        let slot = if index < self.ctx.config.listeners.len() {
            Slot::Http(Box::new(HttpConn::new(&mut self.ctx, id, index, local)))
        } else {
            Slot::Admin(Box::default())
        };
        self.conns[id.0 as usize] = slot;
        self.ctx.live += 1;
        if self.ctx.state != RunState::Running && self.ctx.state != RunState::Warming {
            // Accepted in the window before the driver saw our Unlisten: turn it away.
            self.release(id, CloseKind::Abort);
        }
        id
    }

    /// Feed one event from the driver.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Data { conn, data } => self.dispatch(now, conn, Event::Data(data)),
            Input::ReadClosed { conn } => self.dispatch(now, conn, Event::ReadClosed),
            Input::Closed { conn, reason } => self.dispatch(now, conn, Event::Closed(reason)),
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
                Timer::Connect(conn) => self.dispatch(now, conn, Event::ConnectTimeout),
                Timer::DnsRefresh(cluster) => {
                    let queries = self.ctx.clusters.refresh(cluster, now, &mut self.ctx.timers);
                    self.ctx.out.extend(queries);
                }
                Timer::Drain => {
                    if self.ctx.state == RunState::Draining {
                        self.close_all();
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
        // Idle keep-alive connections have nothing left to finish.
        for id in 0..self.conns.len() {
            if let Slot::Admin(admin) = &self.conns[id] {
                if admin.is_idle() {
                    self.release(ConnId(id as u32), CloseKind::Flush);
                }
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
            Some(QueryOwner::Conn(conn)) => self.dispatch(now, conn, Event::Resolved(addrs)),
            None => {}
        }
    }

    /// Routes a connection event to the machine that owns the connection.
    fn dispatch(&mut self, now: Instant, conn: ConnId, event: Event) {
        let Some(slot) = self.conns.get_mut(conn.0 as usize) else { return };
        match slot {
            Slot::Http(_) => self.with_http(conn, |http, ctx| http.on_downstream(ctx, now, event)),
            Slot::Upstream { downstream } => {
                let downstream = *downstream;
                self.with_http(downstream, |http, ctx| http.on_upstream(ctx, now, event))
            }
            Slot::Admin(admin) => {
                let admin_state = if self.ctx.state == RunState::Running {
                    crate::admin::ServerState::Live
                } else {
                    crate::admin::ServerState::Draining
                };
                if let Some(kind) = admin.on_event(&mut self.ctx, now, conn, event, admin_state) {
                    self.release(conn, kind);
                }
            }
            Slot::Free | Slot::Busy | Slot::Closed => {}
        }
    }

    /// Runs an HTTP connection's machine with the whole context at hand, then applies what it
    /// asked for: new upstream connections to register, and ids to close.
    fn with_http(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&mut HttpConn, &mut Ctx) -> Vec<(ConnId, CloseKind)>,
    ) {
        let Slot::Http(mut http) = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Busy) else {
            unreachable!("with_http on a non-HTTP slot")
        };
        let closes = f(&mut http, &mut self.ctx);
        self.conns[conn.0 as usize] = Slot::Http(http);
        for (id, slot) in std::mem::take(&mut self.ctx.new_conns) {
            if self.conns.len() <= id.0 as usize {
                self.conns.resize_with(id.0 as usize + 1, || Slot::Free);
            }
            self.conns[id.0 as usize] = slot;
        }
        for (id, kind) in closes {
            self.release(id, kind);
        }
    }

    /// Emits the one `Close` for an id and retires its machine.
    fn release(&mut self, conn: ConnId, kind: CloseKind) {
        let slot = std::mem::replace(&mut self.conns[conn.0 as usize], Slot::Closed);
        match slot {
            Slot::Free | Slot::Closed => {
                self.conns[conn.0 as usize] = slot;
                return;
            }
            Slot::Http(http) => {
                http.finish(&mut self.ctx);
                self.ctx.live -= 1;
            }
            Slot::Admin(_) => self.ctx.live -= 1,
            Slot::Upstream { .. } | Slot::Busy => {}
        }
        self.ctx.out.push_back(Output::Close { conn, kind });
    }

    /// Forcibly ends every connection (the drain period is over).
    fn close_all(&mut self) {
        for id in 0..self.conns.len() {
            if matches!(self.conns[id], Slot::Http(_) | Slot::Admin(_)) {
                let conn = ConnId(id as u32);
                let upstream = match &self.conns[id] {
                    Slot::Http(http) => http.upstream(),
                    _ => None,
                };
                self.release(conn, CloseKind::Abort);
                if let Some(up) = upstream {
                    self.release(up, CloseKind::Abort);
                }
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
    Closed(CloseReason),
    Connected,
    ConnectFailed,
    ConnectTimeout,
    Flushed,
    Resolved(Vec<std::net::IpAddr>),
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
        self.new_conns.push((id, Slot::Upstream { downstream }));
        self.out.push_back(Output::Connect { conn: id, addr });
        id
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
