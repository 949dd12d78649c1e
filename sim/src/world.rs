//! The world: one `Proxy`, its peers, a virtual network between them and a virtual clock.
//!
//! The world plays the driver's part with exactly the inputs and outputs a driver uses. Time
//! only moves by jumping to the next thing due: the proxy's `poll_timeout()`, a network
//! delivery, a peer's timer. Every choice the network makes (read sizes, delays, slow readers,
//! refused or never-completing connects, DNS answers) is drawn from one seeded generator, so
//! a seed is a run.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::{Config, Discovery, Endpoint, Family, HttpFilterKind, NetworkFilter};
use burrow_core::{CloseKind, CloseReason, ConnId, Input, ListenerId, Output, Proxy, QueryId, Shared};
use bytes::Bytes;

use crate::check::Checker;
use crate::ledger::Ledger;
use crate::peer::{Action, Cx, Factory, Peer};
use crate::report::{Finding, Notes, Tally};
use crate::rng::Rng;
use crate::trace::Trace;
use crate::vnet::{Executed, VConn, VirtualNet};

/// The largest single read the world hands the proxy.
pub const MAX_READ: usize = 64 * 1024;
/// Runs end here at the latest; a client not done by then is stuck.
pub const TIME_CAP: Duration = Duration::from_secs(6 * 3600);
/// Events handled before a run is declared live-locked.
pub const STEP_CAP: u64 = 3_000_000;

/// How the network behaves (probabilities in per mille).
#[derive(Clone, Debug)]
pub struct NetProfile {
    /// Largest read a connection's reads are cut to (each read is 1..=this, skewed small).
    pub read_max: usize,
    /// Share of reads cut to 1..=16 bytes.
    pub tiny_reads: u32,
    /// Delay between two deliveries on one connection, in microseconds.
    pub latency_us: (u64, u64),
    /// Share of connections whose peer reads slowly (small windows, long pauses).
    pub slow_reader: u32,
    /// Share of connects that are refused, that never complete, that complete slowly.
    pub refuse: u32,
    pub blackhole: u32,
    pub slow_connect: u32,
}

impl NetProfile {
    pub fn calm() -> NetProfile {
        NetProfile {
            read_max: 16 * 1024,
            tiny_reads: 20,
            latency_us: (0, 2_000),
            slow_reader: 0,
            refuse: 0,
            blackhole: 0,
            slow_connect: 0,
        }
    }
}

/// A DNS answer rule for one name. Answers may mix IPv4 and IPv6 addresses, in any order and
/// with repeats, like a real resolver's: the proxy applies each cluster's `dns_lookup_family`.
#[derive(Clone, Debug)]
pub enum DnsRule {
    Answer(Vec<IpAddr>),
    /// Answers with no addresses (the name does not resolve).
    Fail,
    /// Never answers.
    Never,
    /// Answers after 0.3 to 10 seconds.
    Slow(Vec<IpAddr>),
    /// Alternates between answers on each query (a name whose addresses change).
    Rotate(Vec<Vec<IpAddr>>),
}

/// A simulated server: what accepts connections at an address.
pub struct Server {
    pub factory: Factory,
    /// Per-mille chances for this server on top of the network's.
    pub refuse: u32,
    pub blackhole: u32,
}

#[derive(Debug)]
enum Seg {
    Data(Vec<u8>),
    Fin,
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    /// Refused or never answered: no peer.
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Down { listener: usize },
    Up { cluster: Option<usize> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Start,
    Input { link: u64, data: bool },
    Resolved(Option<u64>),
    Timer,
    Accept(u64),
}

/// The world's own state of a connection, beside the virtual driver's record of it.
#[derive(Debug)]
struct Link {
    peer: Option<usize>,
    side: Side,
    phase: Phase,
    // peer -> proxy
    inbound: VecDeque<Seg>,
    in_busy: bool,
    delivered: u64,
    /// The proxy was told the connection is gone (`Closed`): no more inputs.
    told_closed: bool,
    peer_fin: bool,
    peer_closed: bool,
    peer_reset: bool,
    /// The peer has been told the connection ended (EOF or reset).
    peer_ended: bool,
    /// The proxy's FIN has reached the peer.
    fin_to_peer: bool,
    // proxy -> peer
    out_busy: bool,
    closed_by_timer: bool,
    marks: Vec<(u64, u64)>,
    head_ends: Vec<u64>,
    // behaviour
    read_max: usize,
    slow: bool,
    /// An upstream connection opened on a DNS answer for a client's CONNECT.
    after_resolve: bool,
    /// The downstream link this upstream connection was opened for.
    opened_for: Option<u64>,
}

impl Link {
    fn new(side: Side, read_max: usize, slow: bool) -> Link {
        Link {
            peer: None,
            side,
            phase: Phase::Connecting,
            inbound: VecDeque::new(),
            in_busy: false,
            delivered: 0,
            told_closed: false,
            peer_fin: false,
            peer_closed: false,
            peer_reset: false,
            peer_ended: false,
            fin_to_peer: false,
            out_busy: false,
            closed_by_timer: false,
            marks: Vec::new(),
            head_ends: Vec::new(),
            read_max,
            slow,
            after_resolve: false,
            opened_for: None,
        }
    }
}

impl Default for Link {
    /// An upstream connection's until [`World::connect`] fills it in.
    fn default() -> Link {
        Link::new(Side::Up { cluster: None }, 0, false)
    }
}

/// One line for failure reports.
fn describe(l: &VConn<Link>) -> String {
    format!(
        "conn={:?} side={:?} phase={:?} addr={:?} delivered={} written={} unflushed={} inbound={} paused={} shutdown={} closed={:?} peer_fin={} peer_closed={} peer_reset={} told_closed={}",
        l.conn(),
        l.side,
        l.phase,
        l.target,
        l.delivered,
        l.written,
        l.unflushed,
        l.inbound.len(),
        l.paused,
        l.shutdown,
        l.closed,
        l.peer_fin,
        l.peer_closed,
        l.peer_reset,
        l.told_closed
    )
}

#[derive(Debug)]
enum Ev {
    ClientStart {
        peer: usize,
        listener: u32,
    },
    ToProxy {
        link: u64,
    },
    ConnectDone {
        link: u64,
        ok: bool,
    },
    Flush {
        link: u64,
    },
    PeerReset {
        link: u64,
    },
    PeerTimer {
        peer: usize,
        token: u64,
    },
    /// A query reaches the resolver (rules are looked up then, so a world's rules may be
    /// added after the proxy asked at start-up).
    DnsAsk {
        query: QueryId,
        host: String,
    },
    Dns {
        query: QueryId,
        addrs: Vec<IpAddr>,
    },
}

impl Ev {
    /// Events that keep a run going (a DNS answer alone does not).
    fn is_work(&self) -> bool {
        !matches!(self, Ev::Dns { .. } | Ev::DnsAsk { .. })
    }
}

struct PeerSlot {
    peer: Option<Box<dyn Peer>>,
    link: Option<u64>,
    client: bool,
}

/// Gauge names and limits of one cluster, for the per-instant checks.
struct ClusterCheck {
    name: String,
    max_cx: u64,
    max_pending: u64,
    max_rq: u64,
    static_addrs: Vec<SocketAddr>,
    dns: Vec<(String, u16)>,
    original_dst: bool,
    logical_dns: bool,
    family: Family,
}

pub struct World {
    pub proxy: Proxy,
    pub shared: Arc<Shared>,
    pub config: Arc<Config>,
    base: Instant,
    now: Duration,
    seq: u64,
    events: BTreeMap<(Duration, u64), Ev>,
    work: usize,
    /// Connections by link key, live and closed (keys are the virtual driver's).
    links: VirtualNet<Link>,
    peers: Vec<PeerSlot>,
    servers: BTreeMap<SocketAddr, Server>,
    dns: BTreeMap<String, DnsRule>,
    dns_queries: BTreeMap<String, u64>,
    query_cause: BTreeMap<QueryId, Option<u64>>,
    /// The DNS answer being handed to the proxy right now.
    answering: Option<Vec<IpAddr>>,
    pub net: NetProfile,
    rng: Rng,
    peer_rng: Rng,
    pub checker: Checker,
    pub trace: Trace,
    pub notes: Notes,
    pub tally: Tally,
    pub ledger: Ledger,
    cause: Cause,
    clusters: Vec<ClusterCheck>,
    /// (listener index, `http.<prefix>.downstream_cx_active`)
    http_prefixes: Vec<String>,
    wound_down: bool,
    steps: u64,
    gauge_failures: usize,
}

impl World {
    /// A world around a proxy with this config. `seed` drives the network and the proxy's
    /// own entropy; `base` is the `Instant` virtual time zero maps to (outputs must not depend
    /// on it).
    pub fn new(yaml: &str, seed: u64, base: Instant, net: NetProfile, keep_trace: bool) -> World {
        let config =
            Arc::new(Config::from_yaml(yaml).unwrap_or_else(|e| panic!("scenario config: {e}\n{yaml}")));
        let shared = Arc::new(Shared::new(&config));
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let rng = Rng::new(seed);
        let proxy_seed = rng.fork(0x9e11).next_u64();
        let mut trace = Trace::new(keep_trace);
        trace.note(Duration::ZERO, || format!("proxy seed {proxy_seed:#x}"));
        let proxy = Proxy::new(config.clone(), shared.clone(), base, wall, proxy_seed);
        // The largest buffer a config allows: connection limits, and the buffer filter's
        // `max_request_bytes` (a buffered body goes upstream in one piece).
        let buffer_filters = config.listeners.iter().flat_map(|l| match &l.filter {
            NetworkFilter::HttpConnectionManager(h) => h
                .http_filters
                .iter()
                .chain(h.upgrade_configs.iter().flat_map(|u| u.filters.iter().flatten()))
                .filter_map(|f| match f.kind {
                    HttpFilterKind::Buffer { max_request_bytes } => Some(max_request_bytes),
                    HttpFilterKind::Router => None,
                })
                .collect::<Vec<_>>(),
        });
        let max_limit = config
            .listeners
            .iter()
            .map(|l| l.per_connection_buffer_limit_bytes)
            .chain(config.clusters.iter().map(|c| c.per_connection_buffer_limit_bytes))
            .chain(buffer_filters)
            .max()
            .unwrap_or(1 << 20) as usize;
        let clusters = config
            .clusters
            .iter()
            .map(|c| ClusterCheck {
                name: c.name.clone(),
                max_cx: u64::from(c.circuit_breakers.max_connections),
                max_pending: u64::from(c.circuit_breakers.max_pending_requests),
                max_rq: u64::from(c.circuit_breakers.max_requests),
                static_addrs: c
                    .endpoints
                    .iter()
                    .filter_map(|e| match e {
                        Endpoint::Ip(a) => Some(*a),
                        Endpoint::Dns { .. } => None,
                    })
                    .collect(),
                dns: c
                    .endpoints
                    .iter()
                    .filter_map(|e| match e {
                        Endpoint::Dns { host, port } => Some((host.clone(), *port)),
                        Endpoint::Ip(_) => None,
                    })
                    .collect(),
                original_dst: matches!(c.discovery, Discovery::OriginalDst { .. }),
                logical_dns: c.discovery == Discovery::LogicalDns,
                family: c.dns_lookup_family,
            })
            .collect();
        let http_prefixes = config
            .listeners
            .iter()
            .map(|l| match &l.filter {
                NetworkFilter::HttpConnectionManager(h) => h.stat_prefix.clone(),
            })
            .collect();
        let mut world = World {
            proxy,
            shared,
            config,
            base,
            now: Duration::ZERO,
            seq: 0,
            events: BTreeMap::new(),
            work: 0,
            links: VirtualNet::new(),
            peers: Vec::new(),
            servers: BTreeMap::new(),
            dns: BTreeMap::new(),
            dns_queries: BTreeMap::new(),
            query_cause: BTreeMap::new(),
            answering: None,
            net,
            rng: rng.fork(1),
            peer_rng: rng.fork(2),
            // One read past the largest limit, plus framing and heads written with it.
            checker: Checker::new(max_limit + MAX_READ + 8 * 1024),
            trace,
            notes: Notes::default(),
            tally: Tally::default(),
            ledger: Ledger::default(),
            cause: Cause::Start,
            clusters,
            http_prefixes,
            wound_down: false,
            steps: 0,
            gauge_failures: 0,
        };
        world.pump();
        world.cause = Cause::Timer;
        world
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn add_server(&mut self, addr: SocketAddr, server: Server) {
        self.servers.insert(addr, server);
    }

    pub fn add_dns(&mut self, name: &str, rule: DnsRule) {
        self.dns.insert(name.to_ascii_lowercase(), rule);
    }

    /// A client that connects to `listener` at `at`.
    pub fn add_client(&mut self, at: Duration, listener: u32, peer: Box<dyn Peer>) {
        let id = self.peers.len();
        self.peers.push(PeerSlot { peer: Some(peer), link: None, client: true });
        self.schedule(at, Ev::ClientStart { peer: id, listener });
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        if ev.is_work() {
            self.work += 1;
        }
        self.events.insert((at.max(self.now), self.seq), ev);
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = self.net.latency_us;
        Duration::from_micros(self.rng.range(lo, hi))
    }

    // ---- the loop ------------------------------------------------------------------------

    /// Runs until every client is done and every connection closed, or the time cap.
    pub fn run(&mut self) {
        loop {
            self.steps += 1;
            if self.steps > STEP_CAP {
                self.notes.violation(self.now, format!("live-lock: {STEP_CAP} steps without finishing"));
                break;
            }
            if !self.wound_down && self.clients_done() {
                self.wound_down = true;
                self.wind_down();
                continue;
            }
            if self.wound_down && self.work == 0 && self.links.live_count() == 0 && self.clients_done() {
                break;
            }
            let next_event = self.events.keys().next().map(|(at, _)| *at);
            let next_timer = self.proxy.poll_timeout().map(|at| at.saturating_duration_since(self.base));
            let next = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(next) => next,
                    None => break,
                },
            };
            if next > TIME_CAP {
                break;
            }
            self.now = self.now.max(next);
            if next_timer.is_some_and(|t| t <= self.now) {
                self.timeout();
                continue;
            }
            let (key, ev) = self.events.pop_first().expect("an event is due");
            if ev.is_work() {
                self.work -= 1;
            }
            debug_assert!(key.0 <= self.now);
            self.event(ev);
        }
        self.tally.virtual_time += self.now;
    }

    /// Live upstream connections the proxy does not read although bytes wait on them.
    fn stalled_pooled(&self) -> Vec<u64> {
        self.links
            .live()
            .filter(|(_, l)| matches!(l.side, Side::Up { .. }) && l.paused && !l.inbound.is_empty())
            .map(|(key, _)| key)
            .collect()
    }

    /// After an input: a pooled connection the proxy has read every byte of, whose origin
    /// is between requests, and which the proxy still does not read: back in the pool paused.
    fn check_idle_paused(&mut self) {
        let found = self.links.live().find(|(_, l)| {
            matches!(l.side, Side::Up { .. })
                && l.paused
                && l.inbound.is_empty()
                && l.peer.and_then(|p| self.peers[p].peer.as_ref()).is_some_and(|p| p.pooled_http())
        });
        if let Some((key, _)) = found {
            self.notes.signature(
                self.now,
                Finding::PooledConnectionLeftPaused,
                format!("link {key}: the proxy read the whole response and left the connection paused"),
            );
        }
    }

    fn clients_done(&self) -> bool {
        self.peers.iter().all(|p| !p.client || p.peer.as_ref().is_none_or(|peer| peer.done()))
    }

    fn timeout(&mut self) {
        let now = self.base + self.now;
        self.trace.timeout(self.now);
        self.cause = Cause::Timer;
        let stalled = self.stalled_pooled();
        self.proxy.handle_timeout(now);
        self.pump();
        if let Some(key) = stalled.into_iter().find(|k| self.links[*k].conn().is_none()) {
            // A tunnel (a CONNECT's target, or an upgrade whose 101 reached the client) cut as
            // idle while the client drains it; otherwise a pooled connection left paused.
            let tunnel = self.links[key]
                .peer
                .and_then(|p| self.peers[p].peer.as_ref())
                .and_then(|p| p.serving_tunnel())
                .filter(|id| *id == u64::MAX || self.ledger.tunnels.get(id).is_none_or(|t| t.opened));
            match tunnel {
                Some(_) => self.notes.signature(
                    self.now,
                    Finding::IdleTimeoutWhileDraining,
                    format!("a timeout ended the tunnel on link {key}, whose upstream the proxy had paused with bytes waiting"),
                ),
                None => self.notes.signature(
                    self.now,
                    Finding::PooledConnectionLeftPaused,
                    format!("a timeout ended the request on link {key}, a pooled connection the proxy had paused with a response waiting"),
                ),
            }
        }
        if self.proxy.poll_timeout().is_some_and(|at| at <= now) {
            self.notes.violation(self.now, "handle_timeout left an expired deadline in poll_timeout");
        }
        self.check_gauges();
    }

    fn input(&mut self, input: Input) {
        self.checker.input(&input);
        self.trace.input(self.now, &input);
        self.tally.inputs += 1;
        if let Input::Data { data, .. } = &input {
            self.tally.bytes += data.len() as u64;
        }
        self.proxy.handle(self.base + self.now, input);
        self.pump();
        self.check_gauges();
        self.check_idle_paused();
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::ClientStart { peer, listener } => self.client_start(peer, listener),
            Ev::ToProxy { link } => self.deliver(link),
            Ev::ConnectDone { link, ok } => self.connect_done(link, ok),
            Ev::Flush { link } => self.flush(link),
            Ev::PeerReset { link } => self.peer_reset(link),
            Ev::PeerTimer { peer, token } => {
                let link = self.peers[peer].link;
                self.call(peer, link, |p, cx| p.on_timer(cx, token));
            }
            Ev::DnsAsk { query, host } => self.answer(query, host),
            Ev::Dns { query, addrs } => {
                self.links.answered(query);
                self.cause = Cause::Resolved(self.query_cause.remove(&query).flatten());
                self.answering = Some(addrs.clone());
                self.input(Input::Resolved { query, addrs });
                self.answering = None;
            }
        }
    }

    // ---- outputs -------------------------------------------------------------------------

    fn pump(&mut self) {
        while let Some(output) = self.proxy.poll_output() {
            self.checker.output(&output);
            self.trace.output(self.now, &output);
            self.tally.outputs += 1;
            let after_resolve = match &output {
                Output::Write { conn, .. } => self.links.conn(*conn).is_some_and(|l| l.after_resolve),
                _ => false,
            };
            for v in std::mem::take(&mut self.checker.violations) {
                if after_resolve && v.contains("over the bound") {
                    self.notes.signature(self.now, Finding::EarlyDataUnboundedWhileResolving, v);
                } else {
                    self.notes.violation(self.now, v);
                }
            }
            self.apply(output);
        }
    }

    /// The virtual driver executes the output; the world times what follows of it.
    fn apply(&mut self, output: Output) {
        match self.links.execute(output) {
            Executed::Connect { key, conn, addr } => self.connect(key, conn, addr),
            Executed::Write { key, conn, data } => {
                let delay = self.delay();
                let link = &self.links[key];
                // Nothing goes to a client before its first request head is complete (later
                // heads are judged precisely by the client, offset by offset), except the
                // stream idle timeout's 408 to a head that stalled: the client checks that the
                // stall really outlasted the timeout.
                if matches!(link.side, Side::Down { .. })
                    && link.head_ends.first().is_some_and(|end| link.delivered < *end)
                    && !data.starts_with(b"HTTP/1.1 408 ")
                {
                    let (delivered, end) = (link.delivered, link.head_ends[0]);
                    self.notes.violation(
                        self.now,
                        format!("wrote {} bytes to {conn:?} when {delivered} of its first {end} head bytes had arrived", data.len()),
                    );
                }
                let link = &mut self.links[key];
                let mark = (link.written, link.delivered);
                link.marks.push(mark);
                self.flush_soon(key, delay);
            }
            Executed::Shutdown { key, .. } => {
                let delay = self.delay();
                self.flush_soon(key, delay);
            }
            Executed::Close { key, kind, .. } => {
                let by_timer = self.cause == Cause::Timer;
                let delay = self.delay();
                let link = &mut self.links[key];
                link.closed_by_timer = by_timer;
                link.inbound.clear();
                if link.phase != Phase::Open {
                    link.phase = Phase::Dead;
                    return;
                }
                match kind {
                    CloseKind::Abort => self.schedule(self.now + delay, Ev::PeerReset { link: key }),
                    CloseKind::Flush => {
                        if !link.out_busy {
                            link.out_busy = true;
                            self.schedule(self.now + delay, Ev::Flush { link: key });
                        }
                    }
                }
            }
            Executed::ResumeRead { key, .. } => {
                let delay = self.delay();
                let link = &mut self.links[key];
                if !link.inbound.is_empty() && !link.in_busy {
                    link.in_busy = true;
                    self.schedule(self.now + delay, Ev::ToProxy { link: key });
                }
            }
            Executed::Resolve { query, host } => self.resolve(query, host),
            // Bookkeeping only; a refused output is already the checker's violation.
            Executed::Listen { .. }
            | Executed::Unlisten { .. }
            | Executed::PauseRead { .. }
            | Executed::Refused(_) => {}
        }
    }

    /// Written bytes or a FIN of an open connection reach its peer after `delay`.
    fn flush_soon(&mut self, key: u64, delay: Duration) {
        let link = &mut self.links[key];
        if link.phase == Phase::Open && !link.out_busy {
            link.out_busy = true;
            self.schedule(self.now + delay, Ev::Flush { link: key });
        }
    }

    /// The core opened `conn` (record `key`): is it asked for, and how does it go?
    fn connect(&mut self, key: u64, conn: ConnId, addr: SocketAddr) {
        let opened_for = match self.cause {
            Cause::Start => {
                self.notes.violation(self.now, format!("Connect to {addr} with no request (at start-up)"));
                None
            }
            Cause::Input { link, data: true } | Cause::Resolved(Some(link)) => Some(link),
            _ => None,
        };
        match opened_for.and_then(|l| self.links.get(l)) {
            Some(down) if matches!(down.side, Side::Down { .. }) => {
                if down.head_ends.first().is_none_or(|end| down.delivered < *end) {
                    self.notes.violation(
                        self.now,
                        format!(
                            "Connect to {addr} for a downstream connection with no complete request head"
                        ),
                    );
                }
            }
            _ => {
                let asked = self.links.links().any(|(_, l)| {
                    matches!(l.side, Side::Down { .. })
                        && l.conn().is_some()
                        && l.head_ends.first().is_some_and(|end| l.delivered >= *end)
                });
                if !asked {
                    self.notes
                        .violation(self.now, format!("Connect to {addr} while no client has asked anything"));
                }
            }
        }
        let cluster = self.cluster_of(addr);
        self.check_family(addr, cluster);
        let slow = self.rng.chance(self.net.slow_reader);
        let read_max = self.net.read_max;
        let mut link = Link::new(Side::Up { cluster }, read_max, slow);
        link.after_resolve = matches!(self.cause, Cause::Resolved(Some(_)));
        link.opened_for = opened_for;
        self.links[key].ext = link;
        let (refuse, blackhole) = match self.servers.get(&addr) {
            Some(s) => (s.refuse + self.net.refuse, s.blackhole + self.net.blackhole),
            None => (1000, 0),
        };
        let roll = self.rng.below(1000) as u32;
        if roll < blackhole {
            self.tally.fault("connect-never-completes");
            self.trace.note(self.now, || format!("net: connect to {addr} ({conn:?}) will never complete"));
            self.links[key].phase = Phase::Dead;
        } else if roll < blackhole + refuse {
            if self.servers.contains_key(&addr) {
                self.tally.fault("connect-refused");
            }
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::ConnectDone { link: key, ok: false });
        } else {
            let delay = if self.rng.chance(self.net.slow_connect) {
                self.tally.fault("connect-slow");
                Duration::from_millis(self.rng.range(100, 3_000))
            } else {
                self.delay()
            };
            self.schedule(self.now + delay, Ev::ConnectDone { link: key, ok: true });
        }
    }

    fn resolve(&mut self, query: QueryId, host: String) {
        let cause = match self.cause {
            Cause::Input { link, .. } => Some(link),
            Cause::Resolved(link) => link,
            _ => None,
        };
        self.query_cause.insert(query, cause);
        self.schedule(self.now, Ev::DnsAsk { query, host });
    }

    fn answer(&mut self, query: QueryId, host: String) {
        let n = self.dns_queries.entry(host.clone()).or_default();
        *n += 1;
        let n = *n;
        let delay = Duration::from_micros(self.rng.range(0, 20_000));
        let rule = self.dns.get(&host.to_ascii_lowercase()).cloned().unwrap_or(DnsRule::Fail);
        match rule {
            DnsRule::Answer(addrs) => self.schedule(self.now + delay, Ev::Dns { query, addrs }),
            DnsRule::Fail => {
                self.tally.fault("dns-fails");
                self.schedule(self.now + delay, Ev::Dns { query, addrs: Vec::new() });
            }
            DnsRule::Never => {
                self.tally.fault("dns-never-answers");
            }
            DnsRule::Slow(addrs) => {
                self.tally.fault("dns-slow");
                let delay = Duration::from_millis(self.rng.range(300, 10_000));
                self.schedule(self.now + delay, Ev::Dns { query, addrs });
            }
            DnsRule::Rotate(answers) => {
                let addrs = answers[(n as usize - 1) % answers.len()].clone();
                if addrs.is_empty() {
                    self.tally.fault("dns-fails");
                }
                self.schedule(self.now + delay, Ev::Dns { query, addrs });
            }
        }
    }

    /// An upstream address that came from DNS is one its cluster's `dns_lookup_family` keeps
    /// from an answer: for a connection's own name (original destination), the first kept of
    /// the answer being delivered; for a DNS cluster, one kept of any answer its names can
    /// get (the first only for `LOGICAL_DNS`).
    fn check_family(&mut self, addr: SocketAddr, cluster: Option<usize>) {
        let Some(c) = cluster.map(|i| &self.clusters[i]) else { return };
        let ip = addr.ip();
        let (family, fine) = if let Some(answer) = &self.answering {
            // Only original-destination connections resolve their own names.
            let Some(odst) = self.clusters.iter().find(|c| c.original_dst) else { return };
            (odst.family, kept(odst.family, answer).first() == Some(&ip))
        } else if c.original_dst || c.static_addrs.contains(&addr) {
            return;
        } else {
            let fine = c.dns.iter().filter(|(_, port)| *port == addr.port()).any(|(host, _)| {
                let answers = match self.dns.get(host) {
                    Some(DnsRule::Answer(ips) | DnsRule::Slow(ips)) => vec![ips.clone()],
                    Some(DnsRule::Rotate(answers)) => answers.clone(),
                    _ => Vec::new(),
                };
                answers.iter().any(|answer| {
                    let kept = kept(c.family, answer);
                    if c.logical_dns {
                        kept.first() == Some(&ip)
                    } else {
                        kept.contains(&ip)
                    }
                })
            });
            (c.family, fine)
        };
        if !fine {
            let what = match &self.answering {
                Some(answer) => format!("the answer {answer:?}"),
                None => format!("any answer for cluster {}", c.name),
            };
            self.notes.violation(self.now, format!("Connect to {addr}: not what {family:?} keeps of {what}"));
        }
    }

    fn cluster_of(&self, addr: SocketAddr) -> Option<usize> {
        if let Some(i) = self.clusters.iter().position(|c| c.static_addrs.contains(&addr)) {
            return Some(i);
        }
        let by_dns = self.clusters.iter().position(|c| {
            c.dns.iter().any(|(host, port)| {
                *port == addr.port()
                    && match self.dns.get(host) {
                        Some(DnsRule::Answer(ips) | DnsRule::Slow(ips)) => ips.contains(&addr.ip()),
                        Some(DnsRule::Rotate(answers)) => answers.iter().any(|ips| ips.contains(&addr.ip())),
                        _ => false,
                    }
            })
        });
        by_dns.or_else(|| self.clusters.iter().position(|c| c.original_dst))
    }

    // ---- events --------------------------------------------------------------------------

    fn client_start(&mut self, peer: usize, listener: u32) {
        let Some(local) = self.links.listener(ListenerId(listener)) else {
            self.tally.fault("client-refused-no-listener");
            self.call(peer, None, |p, cx| p.on_refused(cx));
            return;
        };
        let read_max = self.net.read_max;
        let slow = self.rng.chance(self.net.slow_reader);
        let key = self.links.next_key();
        let remote = SocketAddr::new(
            IpAddr::from([10, 200, (peer >> 8) as u8, peer as u8]),
            40_000 + (key % 20_000) as u16,
        );
        if slow {
            self.tally.fault("slow-reader");
        }
        self.cause = Cause::Accept(key);
        let conn = self.proxy.accept(self.base + self.now, ListenerId(listener), remote, local);
        self.checker.accepted(conn);
        for v in self.checker.violations.drain(..) {
            self.notes.violation(self.now, v);
        }
        self.trace.accept(self.now, ListenerId(listener), conn);
        self.tally.inputs += 1;
        let mut link = Link::new(Side::Down { listener: listener as usize }, read_max, slow);
        link.phase = Phase::Open;
        link.peer = Some(peer);
        if self.links.accept(conn, link).is_err() {
            // A live id handed out again: the checker reported it; this client gets nothing.
            return;
        }
        self.peers[peer].link = Some(key);
        self.pump();
        self.check_gauges();
        self.call(peer, Some(key), |p, cx| p.on_open(cx));
    }

    fn connect_done(&mut self, key: u64, ok: bool) {
        let link = &mut self.links[key];
        let Some(conn) = link.conn() else { return };
        if link.phase != Phase::Connecting {
            return;
        }
        self.cause = Cause::Input { link: key, data: false };
        if !ok {
            link.phase = Phase::Dead;
            self.input(Input::ConnectFailed { conn });
            return;
        }
        link.phase = Phase::Open;
        let addr = link.target.expect("upstream address");
        let slow = link.slow;
        let peer = {
            let server = self.servers.get_mut(&addr).expect("a server accepted");
            (server.factory)(&mut self.peer_rng)
        };
        let id = self.peers.len();
        self.peers.push(PeerSlot { peer: Some(peer), link: Some(key), client: false });
        self.links[key].peer = Some(id);
        if slow {
            self.tally.fault("slow-reader");
        }
        self.input(Input::Connected { conn });
        self.call(id, Some(key), |p, cx| p.on_open(cx));
        if self.wound_down {
            self.call(id, Some(key), |p, cx| p.on_wind_down(cx));
        }
        // Writes queued while connecting go out now.
        let link = &mut self.links[key];
        if (!link.outbound.is_empty() || link.shutdown || link.closed.is_some()) && !link.out_busy {
            link.out_busy = true;
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::Flush { link: key });
        }
    }

    /// Delivers the next read (or FIN, or reset) of a connection to the proxy.
    fn deliver(&mut self, key: u64) {
        let tiny = self.rng.chance(self.net.tiny_reads);
        let link = &mut self.links[key];
        link.in_busy = false;
        let Some(conn) = link.conn() else { return };
        if link.told_closed || link.phase != Phase::Open || link.paused {
            return;
        }
        let input = match link.inbound.front_mut() {
            None => return,
            Some(Seg::Data(_)) => {
                let max = if tiny { 16 } else { link.read_max };
                let want = self.rng.usize(1, max);
                let link = &mut self.links[key];
                let mut read = Vec::new();
                while read.len() < want {
                    match link.inbound.front_mut() {
                        Some(Seg::Data(d)) => {
                            let take = (want - read.len()).min(d.len());
                            read.extend(d.drain(..take));
                            if d.is_empty() {
                                link.inbound.pop_front();
                            }
                        }
                        _ => break,
                    }
                }
                link.delivered += read.len() as u64;
                Input::Data { conn, data: Bytes::from(read) }
            }
            Some(Seg::Fin) => {
                link.inbound.pop_front();
                Input::ReadClosed { conn }
            }
            Some(Seg::Reset) => {
                link.inbound.clear();
                link.told_closed = true;
                Input::Closed { conn, reason: CloseReason::Reset }
            }
        };
        let more = !self.links[key].inbound.is_empty();
        self.cause = Cause::Input { link: key, data: matches!(input, Input::Data { .. }) };
        self.input(input);
        let link = &mut self.links[key];
        if more && !link.in_busy && link.conn().is_some() {
            link.in_busy = true;
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::ToProxy { link: key });
        }
    }

    /// The peer reads some of what the proxy wrote; the proxy hears `Flushed`.
    fn flush(&mut self, key: u64) {
        let (window, pause) = if self.links[key].slow {
            (self.rng.usize(256, 8 * 1024), Duration::from_millis(self.rng.range(5, 400)))
        } else {
            (self.rng.usize(1024, 256 * 1024), self.delay())
        };
        let link = &mut self.links[key];
        link.out_busy = false;
        if link.phase != Phase::Open {
            return;
        }
        if link.peer_reset || link.peer_closed {
            // The peer is gone: the write fails.
            let pending = !link.outbound.is_empty() || (link.shutdown && !link.peer_ended);
            link.outbound.clear();
            link.unflushed = 0;
            if pending && !link.told_closed {
                if let Some(conn) = link.conn() {
                    link.told_closed = true;
                    self.cause = Cause::Input { link: key, data: false };
                    self.input(Input::Closed { conn, reason: CloseReason::WriteError });
                }
            }
            return;
        }
        if link.peer_ended {
            return;
        }
        let chunk = link.take(window);
        let more = !link.outbound.is_empty();
        let conn = link.conn();
        let finish = !more && (link.shutdown || link.closed == Some(CloseKind::Flush));
        let peer = link.peer;
        if !chunk.is_empty() {
            if let Some(conn) = conn {
                if !link.told_closed {
                    self.cause = Cause::Input { link: key, data: false };
                    self.input(Input::Flushed { conn, bytes: chunk.len() });
                }
            }
            if let Some(peer) = peer {
                let n = chunk.len();
                self.trace.note(self.now, || format!("net: link {key} -> peer {peer}: {n} bytes"));
                self.call(peer, Some(key), |p, cx| p.on_data(cx, &chunk));
            }
        }
        let link = &mut self.links[key];
        if !link.outbound.is_empty() {
            if !link.out_busy {
                link.out_busy = true;
                self.schedule(self.now + pause, Ev::Flush { link: key });
            }
        } else if finish && !link.peer_ended {
            if link.closed.is_some() {
                link.peer_ended = true;
            }
            if !link.fin_to_peer {
                link.fin_to_peer = true;
                let by_timer = link.closed_by_timer;
                if let Some(peer) = peer {
                    self.trace.note(self.now, || {
                        format!("net: link {key} -> peer {peer}: EOF (by timer: {by_timer})")
                    });
                    self.call_with(peer, Some(key), by_timer, |p, cx| p.on_eof(cx));
                }
            }
        }
    }

    fn peer_reset(&mut self, key: u64) {
        let link = &mut self.links[key];
        if link.peer_ended || link.peer_closed {
            return;
        }
        link.peer_ended = true;
        if let Some(peer) = link.peer {
            self.trace.note(self.now, || format!("net: link {key} -> peer {peer}: reset"));
            self.call(peer, Some(key), |p, cx| p.on_reset(cx));
        }
    }

    fn wind_down(&mut self) {
        self.trace.note(self.now, || "every client is done: winding down".to_string());
        for id in 0..self.peers.len() {
            let link = self.peers[id].link;
            if link.is_some_and(|l| self.links[l].conn().is_some() && !self.links[l].peer_ended) {
                self.call(id, link, |p, cx| p.on_wind_down(cx));
            }
        }
    }

    // ---- peers ---------------------------------------------------------------------------

    fn call(&mut self, peer: usize, link: Option<u64>, f: impl FnOnce(&mut dyn Peer, &mut Cx<'_>)) {
        self.call_with(peer, link, false, f)
    }

    fn call_with(
        &mut self,
        peer: usize,
        link: Option<u64>,
        by_timer: bool,
        f: impl FnOnce(&mut dyn Peer, &mut Cx<'_>),
    ) {
        let tunnel_hint = link
            .and_then(|l| self.links.get(l))
            .and_then(|l| l.opened_for)
            .and_then(|d| self.links.get(d))
            .and_then(|d| d.peer)
            .and_then(|p| self.peers[p].peer.as_ref())
            .and_then(|p| p.tunnel_id());
        let Some(mut p) = self.peers[peer].peer.take() else { return };
        let (marks, delivered): (&[(u64, u64)], u64) = match link.and_then(|l| self.links.get(l)) {
            Some(l) => (&l.marks, l.delivered),
            None => (&[], 0),
        };
        let mut cx = Cx {
            now: self.now,
            ledger: &mut self.ledger,
            tally: &mut self.tally,
            notes: &mut self.notes,
            actions: Vec::new(),
            by_timer,
            marks,
            delivered,
            tunnel_hint,
        };
        f(p.as_mut(), &mut cx);
        let actions = std::mem::take(&mut cx.actions);
        self.peers[peer].peer = Some(p);
        for action in actions {
            self.peer_action(peer, link, action);
        }
    }

    fn peer_action(&mut self, peer: usize, link: Option<u64>, action: Action) {
        if let Action::Timer(after, token) = action {
            self.schedule(self.now + after, Ev::PeerTimer { peer, token });
            return;
        }
        let Some(key) = link else { return };
        self.trace.note(self.now, || match &action {
            Action::Write(d) => format!("peer {peer} on link {key}: write {}", d.len()),
            other => format!("peer {peer} on link {key}: {other:?}"),
        });
        let delay = self.delay();
        let link = &mut self.links[key];
        if link.peer_reset || link.peer_closed {
            return;
        }
        match action {
            Action::Write(data) => {
                if link.peer_fin {
                    self.notes.violation(self.now, "sim: a peer wrote after its own FIN");
                    return;
                }
                link.inbound.push_back(Seg::Data(data));
            }
            Action::Shutdown => {
                if link.peer_fin {
                    return;
                }
                link.peer_fin = true;
                link.inbound.push_back(Seg::Fin);
            }
            Action::Close => {
                if !link.peer_fin {
                    link.inbound.push_back(Seg::Fin);
                }
                link.peer_fin = true;
                link.peer_closed = true;
                // Bytes still queued towards this peer will fail to write.
                if !link.outbound.is_empty() && !link.out_busy {
                    link.out_busy = true;
                    self.schedule(self.now + delay, Ev::Flush { link: key });
                }
            }
            Action::Reset => {
                link.peer_reset = true;
                link.peer_ended = true;
                link.inbound.retain(|s| !matches!(s, Seg::Data(_)));
                link.inbound.push_back(Seg::Reset);
            }
            Action::HeadEnd(offset) => {
                link.head_ends.push(offset);
                return;
            }
            Action::Timer(..) => unreachable!(),
        }
        let link = &mut self.links[key];
        if link.conn().is_some() && link.phase == Phase::Open && !link.in_busy && !link.paused {
            link.in_busy = true;
            self.schedule(self.now + delay, Ev::ToProxy { link: key });
        }
    }

    // ---- invariants ----------------------------------------------------------------------

    fn gauge(&self, name: &str) -> u64 {
        self.shared.stats.value(name).unwrap_or(0)
    }

    fn gauge_fail(&mut self, what: String) {
        self.gauge_failures += 1;
        if self.gauge_failures <= 5 {
            self.notes.violation(self.now, what);
        }
    }

    /// Gauges against what the world can count, at every instant.
    fn check_gauges(&mut self) {
        let mut down = vec![0u64; self.http_prefixes.len()];
        let mut up = vec![0u64; self.clusters.len()];
        let mut connecting = vec![0u64; self.clusters.len()];
        let mut hosts: Vec<Vec<SocketAddr>> = vec![Vec::new(); self.clusters.len()];
        for (_, l) in self.links.live() {
            match l.side {
                Side::Down { listener } => down[listener] += 1,
                Side::Up { cluster: Some(c) } => {
                    up[c] += 1;
                    connecting[c] += u64::from(l.phase != Phase::Open);
                    if let Some(addr) = l.target.filter(|a| !hosts[c].contains(a)) {
                        hosts[c].push(addr);
                    }
                }
                Side::Up { cluster: None } => {}
            }
        }
        for (i, prefix) in self.http_prefixes.clone().iter().enumerate() {
            let live = down[i];
            let active = self.gauge(&format!("http.{prefix}.downstream_cx_active"));
            if active != live {
                self.gauge_fail(format!(
                    "http.{prefix}.downstream_cx_active = {active}, live downstream connections {live}"
                ));
            }
            for g in ["downstream_rq_active", "downstream_cx_upgrades_active"] {
                let v = self.gauge(&format!("http.{prefix}.{g}"));
                if v > live {
                    self.gauge_fail(format!("http.{prefix}.{g} = {v} with {live} downstream connections"));
                }
            }
        }
        for c in 0..self.clusters.len() {
            let live = up[c];
            let cc = &self.clusters[c];
            let (name, max_cx, max_pending, max_rq) = (cc.name.clone(), cc.max_cx, cc.max_pending, cc.max_rq);
            let g = |w: &World, n: &str| w.gauge(&format!("cluster.{name}.{n}"));
            let cx_active = g(self, "upstream_cx_active");
            let rq_active = g(self, "upstream_rq_active");
            let pending = g(self, "upstream_rq_pending_active");
            let cb = "circuit_breakers.default";
            let remaining_cx = g(self, &format!("{cb}.remaining_cx"));
            let remaining_rq = g(self, &format!("{cb}.remaining_rq"));
            let remaining_pending = g(self, &format!("{cb}.remaining_pending"));
            let cx_open = g(self, &format!("{cb}.cx_open"));
            if cx_active != live {
                self.gauge_fail(format!(
                    "cluster.{name}.upstream_cx_active = {cx_active}, live upstream connections {live}"
                ));
            }
            // Envoy's one exception: a host with no connection may open one past the limit.
            if live > max_cx + hosts[c].len() as u64 {
                self.gauge_fail(format!(
                    "cluster {name}: {live} live connections to {} hosts over max_connections {max_cx}",
                    hosts[c].len()
                ));
            }
            if rq_active > max_rq || pending > max_pending || rq_active + pending > max_rq {
                self.gauge_fail(format!(
                    "cluster {name}: upstream_rq_active {rq_active} + pending {pending} over max_requests {max_rq} / max_pending {max_pending}"
                ));
            }
            if remaining_cx != max_cx.saturating_sub(live) || cx_open != u64::from(live >= max_cx) {
                self.gauge_fail(format!(
                    "cluster {name}: remaining_cx {remaining_cx} cx_open {cx_open} with {live} live of max {max_cx}"
                ));
            }
            if remaining_pending != max_pending.saturating_sub(pending) {
                self.gauge_fail(format!(
                    "cluster {name}: remaining_pending {remaining_pending} with upstream_rq_pending_active {pending} of max {max_pending}"
                ));
            }
            if remaining_rq != max_rq.saturating_sub(rq_active + pending) {
                self.gauge_fail(format!(
                    "cluster {name}: remaining_rq {remaining_rq} with upstream_rq_active {rq_active} + pending {pending} of max {max_rq}"
                ));
            }
            if pending > 0 && live < max_cx && connecting[c] == 0 {
                self.notes.signature(
                    self.now,
                    Finding::PendingRequestStarved,
                    format!("cluster {name}: {pending} pending requests, {live} of {max_cx} connections, none being opened"),
                );
            }
        }
    }

    /// The checks once a run is over: nothing left open, every gauge back at rest, every
    /// client done, and the ledger's end-to-end rules.
    pub fn finish(&mut self) {
        let now = self.now;
        let open: Vec<String> = self
            .links
            .links()
            .filter(|(_, l)| l.conn().is_some())
            .map(|(k, l)| {
                let peer = l
                    .peer
                    .and_then(|p| self.peers[p].peer.as_ref())
                    .map(|p| p.describe())
                    .unwrap_or_default();
                format!("link {k}: {} | {peer}", describe(l))
            })
            .collect();
        if let Some(key) = self.stalled_pooled().first() {
            self.notes.signature(
                now,
                Finding::PooledConnectionLeftPaused,
                format!("link {key} is a pooled connection the proxy left paused with bytes waiting"),
            );
        }
        for c in 0..self.clusters.len() {
            let name = self.clusters[c].name.clone();
            let pending = self.gauge(&format!("cluster.{name}.upstream_rq_pending_active"));
            if pending > 0 {
                self.notes.signature(
                    now,
                    Finding::PendingRequestStarved,
                    format!("cluster {name}: {pending} requests still pending when nothing else can happen"),
                );
            }
        }
        let pending: u64 = (0..self.clusters.len())
            .map(|c| self.gauge(&format!("cluster.{}.upstream_rq_pending_active", self.clusters[c].name)))
            .sum();
        let paused_down = self
            .links
            .live()
            .find(|(_, l)| matches!(l.side, Side::Down { .. }) && l.paused)
            .map(|(key, _)| key);
        if let (Some(key), 0, true) = (paused_down, pending, self.stalled_pooled().is_empty()) {
            self.notes.signature(
                now,
                Finding::DownstreamLeftPaused,
                format!("link {key}: a client connection left paused with bytes waiting and nothing pending upstream"),
            );
        }
        for line in open.iter().take(8) {
            self.notes.consequence(now, format!("still open at the end: {line}"));
        }
        for slot in &self.peers {
            if let Some(peer) = &slot.peer {
                if slot.client && !peer.done() {
                    self.notes.consequence(now, format!("client not done at the end: {}", peer.describe()));
                }
            }
        }
        for (i, prefix) in self.http_prefixes.clone().iter().enumerate() {
            let _ = i;
            for g in ["downstream_cx_active", "downstream_rq_active", "downstream_cx_upgrades_active"] {
                let v = self.gauge(&format!("http.{prefix}.{g}"));
                if v != 0 {
                    self.notes.consequence(now, format!("http.{prefix}.{g} = {v} at rest"));
                }
            }
        }
        for c in 0..self.clusters.len() {
            let cc = &self.clusters[c];
            let name = cc.name.clone();
            let want = [
                ("upstream_cx_active".to_string(), 0),
                ("upstream_rq_active".to_string(), 0),
                ("upstream_rq_pending_active".to_string(), 0),
                ("circuit_breakers.default.remaining_cx".to_string(), cc.max_cx),
                ("circuit_breakers.default.remaining_rq".to_string(), cc.max_rq),
                ("circuit_breakers.default.remaining_pending".to_string(), cc.max_pending),
                ("circuit_breakers.default.cx_open".to_string(), 0),
                ("circuit_breakers.default.rq_open".to_string(), 0),
                ("circuit_breakers.default.rq_pending_open".to_string(), 0),
            ];
            for (g, v) in want {
                let got = self.gauge(&format!("cluster.{name}.{g}"));
                if got != v {
                    self.notes.consequence(now, format!("cluster.{name}.{g} = {got} at rest, want {v}"));
                }
            }
        }
        // Peers' own final checks, then the end-to-end rules.
        for id in 0..self.peers.len() {
            let link = self.peers[id].link;
            self.call(id, link, |p, cx| p.finish(cx));
        }
        self.ledger.check(now, &mut self.notes, &mut self.tally);
        self.notes.settle();
        self.tally.max_queued = self.tally.max_queued.max(self.checker.max_queued);
        self.tally.scenarios += 1;
        self.tally.calm += u64::from(self.ledger.calm);
        for class in Finding::ALL {
            if self.notes.findings.iter().any(|(c, _)| *c == class) {
                *self.tally.findings.entry(class.name()).or_default() += 1;
            }
        }
    }

    /// One line per peer and open link, for failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, slot) in self.peers.iter().enumerate() {
            if let Some(p) = &slot.peer {
                out.push_str(&format!("  peer {i} (link {:?}): {}\n", slot.link, p.describe()));
            }
        }
        out
    }
}

/// What `dns_lookup_family` keeps of an answer, in order (the simulator's own statement of
/// Envoy's rule, to check the proxy's against).
fn kept(family: Family, answer: &[IpAddr]) -> Vec<IpAddr> {
    let v4 = answer.iter().any(IpAddr::is_ipv4);
    let v6 = answer.iter().any(IpAddr::is_ipv6);
    let keep = |ip: &IpAddr| match family {
        Family::V4Only => ip.is_ipv4(),
        Family::V6Only => ip.is_ipv6(),
        Family::Auto => ip.is_ipv6() || !v6,
        Family::V4Preferred => ip.is_ipv4() || !v4,
        Family::All => true,
    };
    let mut out: Vec<IpAddr> = Vec::new();
    // IPv4 first (only `All` keeps both), each address once.
    for ip in answer.iter().filter(|ip| ip.is_ipv4()).chain(answer.iter().filter(|ip| ip.is_ipv6())) {
        if keep(ip) && !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}
