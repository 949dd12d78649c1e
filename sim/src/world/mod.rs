//! The world: one `Proxy`, its peers, a virtual network between them and a virtual clock.
//!
//! The world plays the driver's part with exactly the inputs and outputs a driver uses. A
//! connection the proxy opens to one of its own listeners is accepted by the proxy too, and
//! the world relays between the two sockets (a loopback pair, no peer in between). Time
//! only moves by jumping to the next thing due: the proxy's `poll_timeout()`, a network
//! delivery, a peer's timer. Every choice the network makes (read sizes, delays, slow readers,
//! refused or never-completing connects, DNS answers) is drawn from one seeded generator, so
//! a seed is a run.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use burrow_core::config::{Config, HttpFilterKind, Listener, NetworkFilter, TcpProxy};
use burrow_core::{Input, Proxy, QueryId, Shared};

use crate::check::Checker;
use crate::ledger::Ledger;
use crate::peer::{Factory, Peer};
use crate::report::{Finding, Notes, Tally};
use crate::rng::Rng;
use crate::trace::Trace;
use crate::vnet::VirtualNet;

mod actions;
mod dns;
mod events;
mod invariants;
mod link;
mod outputs;

use invariants::ClusterCheck;
use link::Link;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Start,
    Input { link: u64, data: bool },
    Resolved(Option<u64>),
    Timer,
    Accept(u64),
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
    /// Per listener, its connection manager's stat prefix (`None`: a TCP proxy listener).
    http_prefixes: Vec<Option<String>>,
    /// Per cluster: a TCP proxy connects to it on its own (no `tunneling_config`), one
    /// connection per attempt of a client's.
    plain_tcp: Vec<bool>,
    /// Connections to `plain_tcp` clusters opened by a timer and not yet matched with the
    /// client they retry for (the attempt that timed out is closed right after).
    orphans: Vec<u64>,
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
        let buffer_filters = config.listeners.iter().filter_map(|l| l.http()).flat_map(|h| {
            h.http_filters
                .iter()
                .chain(h.upgrade_configs.iter().flat_map(|u| u.filters.iter().flatten()))
                .filter_map(|f| match f.kind {
                    HttpFilterKind::Buffer { max_request_bytes } => Some(max_request_bytes),
                    HttpFilterKind::Router => None,
                })
                .collect::<Vec<_>>()
        });
        let max_limit = config
            .listeners
            .iter()
            .map(|l| l.per_connection_buffer_limit_bytes)
            .chain(config.clusters.iter().map(|c| c.per_connection_buffer_limit_bytes))
            .chain(buffer_filters)
            .max()
            .unwrap_or(1 << 20) as usize;
        let clusters = config.clusters.iter().map(ClusterCheck::of).collect();
        let http_prefixes =
            config.listeners.iter().map(|l| l.http().map(|h| h.stat_prefix.clone())).collect();
        let plain_tcp = (0..config.clusters.len())
            .map(|c| {
                config
                    .listeners
                    .iter()
                    .filter_map(tcp_proxy)
                    .any(|t| t.tunneling.is_none() && t.clusters.iter().any(|w| w.cluster == c))
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
            plain_tcp,
            orphans: Vec::new(),
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

    /// The tunnel link `key` carries, if known: its client's, its target's, or the one its
    /// loopback request named.
    fn serving(&self, key: u64) -> Option<u64> {
        let link = self.links.get(key)?;
        let peer = link.peer.and_then(|p| self.peers[p].peer.as_ref());
        peer.and_then(|p| p.tunnel_id().or(p.serving_tunnel())).filter(|id| *id != u64::MAX).or(link.tunnel)
    }

    /// Whether link `key` is a client's connection to a TCP proxy listener.
    fn tcp_client(&self, key: u64) -> bool {
        self.links.get(key).is_some_and(|l| match l.side {
            link::Side::Down { listener } => tcp_proxy(&self.config.listeners[listener]).is_some(),
            link::Side::Up { .. } => false,
        })
    }

    /// A TCP proxy's `max_downstream_connection_duration` has ended every client connection
    /// that old, and the far end of its tunnel; those with bytes still queued close later.
    fn expire(&mut self) {
        let config = self.config.clone();
        let now = self.now;
        let max =
            |listener: usize| tcp_proxy(&config.listeners[listener])?.max_downstream_connection_duration;
        // Closed by this timer, or closing once drained.
        let expired: Vec<(u64, Option<u64>)> = self
            .links
            .links()
            .filter(|(_, l)| l.conn().is_some() || l.closed_by_timer)
            .filter(|(_, l)| match l.side {
                link::Side::Down { listener } => max(listener).is_some_and(|max| l.accepted + max <= now),
                link::Side::Up { .. } => false,
            })
            .map(|(key, l)| {
                (key, l.peer.and_then(|p| self.peers[p].peer.as_ref()).and_then(|p| p.tunnel_id()))
            })
            .collect();
        for (client, tunnel) in expired {
            let far: Vec<u64> = self
                .links
                .live()
                .filter(|(_, l)| {
                    let plain = matches!(l.side, link::Side::Up { cluster: Some(c) } if self.plain_tcp[c]);
                    let serves =
                        l.peer.and_then(|p| self.peers[p].peer.as_ref()).and_then(|p| p.serving_tunnel());
                    plain && l.opened_for == Some(client)
                        || tunnel.is_some()
                            && matches!(l.side, link::Side::Up { .. })
                            && serves.or(l.tunnel) == tunnel
                })
                .map(|(key, _)| key)
                .collect();
            for key in far.into_iter().chain([client]) {
                self.links[key].ended_by_timer = true;
            }
        }
    }

    /// A counter summed over the TCP proxy listeners (`tcp.<prefix>.<name>`).
    fn tcp_counter(&self, name: &str) -> u64 {
        self.config
            .listeners
            .iter()
            .filter_map(tcp_proxy)
            .map(|t| self.shared.stats.value(&format!("tcp.{}.{name}", t.stat_prefix)).unwrap_or(0))
            .sum()
    }

    fn clients_done(&self) -> bool {
        self.peers.iter().all(|p| !p.client || p.peer.as_ref().is_none_or(|peer| peer.done()))
    }

    fn timeout(&mut self) {
        let now = self.base + self.now;
        self.trace.timeout(self.now);
        self.cause = Cause::Timer;
        // Upstreams paused with bytes waiting, and whether the client being answered explains it.
        let stalled: Vec<(u64, bool)> =
            self.stalled_pooled().into_iter().map(|k| (k, self.paused_for_client(k))).collect();
        let duration_limits = self.tcp_counter("max_downstream_connection_duration");
        self.proxy.handle_timeout(now);
        self.pump();
        self.orphans.clear();
        // A TCP proxy's `max_downstream_connection_duration` ends a connection however busy.
        let limited = self.tcp_counter("max_downstream_connection_duration") > duration_limits;
        if limited {
            self.expire();
        }
        if let Some((key, for_client)) =
            stalled.into_iter().find(|(k, _)| !limited && self.links[*k].conn().is_none())
        {
            // A tunnel (a CONNECT's target, or an upgrade whose 101 reached the client) cut as
            // idle while the client drains it; otherwise a pooled connection left paused.
            let tunnel = self.links[key]
                .peer
                .and_then(|p| self.peers[p].peer.as_ref())
                .and_then(|p| p.serving_tunnel())
                .or(self.links[key].tunnel)
                .filter(|id| *id == u64::MAX || self.ledger.tunnels.get(id).is_none_or(|t| t.opened));
            match tunnel {
                Some(_) => self.notes.signature(
                    self.now,
                    Finding::IdleTimeoutWhileDraining,
                    format!("a timeout ended the tunnel on link {key}, whose upstream the proxy had paused with bytes waiting"),
                ),
                // A stream idle or route timeout while a slow client drains the response: the
                // upstream was paused for that client, as it should be.
                None if for_client => {}
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
}

/// A listener's TCP proxy, if that is its filter.
fn tcp_proxy(l: &Listener) -> Option<&TcpProxy> {
    match &l.filter {
        NetworkFilter::TcpProxy(t) => Some(t),
        NetworkFilter::HttpConnectionManager(_) => None,
    }
}
