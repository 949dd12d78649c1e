//! The world's invariants: gauges against what it can count at every instant, stalls, and
//! the checks once a run is over.

use std::net::SocketAddr;

use burrow_core::config::{Cluster, Discovery, Endpoint, Family};

use crate::peer::Peer;
use crate::report::Finding;

use super::link::{describe, Phase, Side};
use super::{tcp_proxy, PeerSlot, World};

/// Gauge names and limits of one cluster, for the per-instant checks.
pub(super) struct ClusterCheck {
    pub(super) name: String,
    pub(super) max_cx: u64,
    pub(super) max_pending: u64,
    pub(super) max_rq: u64,
    pub(super) static_addrs: Vec<SocketAddr>,
    pub(super) dns: Vec<(String, u16)>,
    pub(super) original_dst: bool,
    pub(super) logical_dns: bool,
    pub(super) family: Family,
}

impl ClusterCheck {
    /// What the checks need of a configured cluster.
    pub(super) fn of(c: &Cluster) -> ClusterCheck {
        ClusterCheck {
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
        }
    }
}

impl World {
    /// Live upstream connections the proxy does not read although bytes wait on them.
    pub(super) fn stalled_pooled(&self) -> Vec<u64> {
        self.links
            .live()
            .filter(|(_, l)| matches!(l.side, Side::Up { .. }) && l.paused && !l.inbound.is_empty())
            .map(|(key, _)| key)
            .collect()
    }

    /// Whether the proxy's pause of upstream link `key` is back-pressure from the client its
    /// last response goes to: that client has not yet read the proxy's queue down to half its
    /// buffer limit (where reading the upstream resumes), so the upstream rightly waits.
    pub(super) fn paused_for_client(&self, key: u64) -> bool {
        fn peer(slot: &PeerSlot) -> Option<&dyn Peer> {
            slot.peer.as_deref()
        }
        let Some(rid) =
            self.links[key].peer.and_then(|p| peer(&self.peers[p])).and_then(|p| p.last_request())
        else {
            return false;
        };
        let Some(down) =
            self.peers.iter().find(|s| peer(s).is_some_and(|p| p.sends_request(rid))).and_then(|s| s.link)
        else {
            return false;
        };
        let down = &self.links[down];
        match down.side {
            Side::Down { listener } => {
                let limit = self.config.listeners[listener].per_connection_buffer_limit_bytes as usize;
                down.conn().is_some() && down.unflushed > limit / 2
            }
            Side::Up { .. } => false,
        }
    }

    /// After an input: a pooled connection the proxy has read every byte of, whose origin
    /// is between requests, and which the proxy still does not read: back in the pool paused.
    pub(super) fn check_idle_paused(&mut self) {
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
    pub(super) fn check_gauges(&mut self) {
        let mut down = vec![0u64; self.http_prefixes.len()];
        // Requests the downstream connections may have in flight: one each, or a multiplexed
        // client's streams.
        let mut in_flight = vec![0u64; self.http_prefixes.len()];
        let mut up = vec![0u64; self.clusters.len()];
        let mut connecting = vec![0u64; self.clusters.len()];
        let mut hosts: Vec<Vec<SocketAddr>> = vec![Vec::new(); self.clusters.len()];
        for (_, l) in self.links.live() {
            match l.side {
                Side::Down { listener } => {
                    down[listener] += 1;
                    let peer = l.peer.and_then(|p| self.peers[p].peer.as_ref());
                    in_flight[listener] += peer.and_then(|p| p.streams()).unwrap_or(1);
                }
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
        for (i, live) in down.iter().enumerate() {
            let name = listener_gauge(self.config.listeners[i].address);
            let active = self.gauge(&name);
            if active != *live {
                self.gauge_fail(format!("{name} = {active}, live downstream connections {live}"));
            }
        }
        for (i, prefix) in self.http_prefixes.clone().iter().enumerate() {
            let Some(prefix) = prefix else { continue };
            let live = down[i];
            let active = self.gauge(&format!("http.{prefix}.downstream_cx_active"));
            if active != live {
                self.gauge_fail(format!(
                    "http.{prefix}.downstream_cx_active = {active}, live downstream connections {live}"
                ));
            }
            for g in ["downstream_rq_active", "downstream_cx_upgrades_active"] {
                let v = self.gauge(&format!("http.{prefix}.{g}"));
                if v > in_flight[i] {
                    self.gauge_fail(format!(
                        "http.{prefix}.{g} = {v} with {live} downstream connections carrying at most {} requests",
                        in_flight[i]
                    ));
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
        for l in &self.config.listeners {
            let name = listener_gauge(l.address);
            let v = self.gauge(&name);
            if v != 0 {
                self.notes.consequence(now, format!("{name} = {v} at rest"));
            }
        }
        for prefix in self.http_prefixes.clone().iter().flatten() {
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
        self.check_tcp_proxies();
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

    /// The TCP proxy listeners' counters against what the world saw, and each client's
    /// attempts against `max_connect_attempts`.
    fn check_tcp_proxies(&mut self) {
        let now = self.now;
        let config = self.config.clone();
        for (i, tcp) in config.listeners.iter().enumerate().filter_map(|(i, l)| Some((i, tcp_proxy(l)?))) {
            let clients: Vec<_> = self
                .links
                .links()
                .filter(|(_, l)| l.side == (Side::Down { listener: i }))
                .map(|(_, l)| l)
                .collect();
            let want = [
                ("downstream_cx_total", clients.len() as u64),
                ("downstream_cx_rx_bytes_total", clients.iter().map(|l| l.delivered).sum()),
                ("downstream_cx_tx_bytes_total", clients.iter().map(|l| l.written).sum()),
            ];
            for (name, want) in want {
                let name = format!("tcp.{}.{name}", tcp.stat_prefix);
                let got = self.gauge(&name);
                if got != want {
                    self.notes.violation(now, format!("{name} = {got}, the world counts {want}"));
                }
            }
            // Tunnels to peers (not to the proxy's own listeners, which refuse by themselves):
            // the refusals counted are some of those the terminators wrote.
            let to_peers = tcp
                .clusters
                .iter()
                .all(|w| self.clusters[w.cluster].static_addrs.iter().all(|a| self.servers.contains_key(a)));
            if tcp.tunneling.is_some() && to_peers {
                for (status, written) in self.ledger.refusals.clone() {
                    let name = format!("tcp.{}.tunnel_response_{status}", tcp.stat_prefix);
                    let got = self.gauge(&name);
                    if got > written {
                        self.notes.violation(now, format!("{name} = {got}, terminators wrote {written}"));
                    }
                }
            }
        }
        // Every connection to a plain TCP proxy cluster is an attempt of one client's.
        let mut attempts: std::collections::BTreeMap<u64, u32> = Default::default();
        for (key, l) in self.links.links() {
            let Side::Up { cluster: Some(c) } = l.side else { continue };
            if !self.plain_tcp[c] {
                continue;
            }
            match l.opened_for {
                Some(client) => *attempts.entry(client).or_default() += 1,
                None => self.notes.violation(
                    now,
                    format!(
                        "link {key}: a connection to cluster {} that no client's attempt accounts for",
                        self.clusters[c].name
                    ),
                ),
            }
        }
        for (client, n) in attempts {
            let Side::Down { listener } = self.links[client].side else { continue };
            let max = tcp_proxy(&config.listeners[listener]).map_or(0, |t| t.max_connect_attempts);
            if n > max {
                self.notes.violation(
                    now,
                    format!("link {client}: {n} upstream connections for one client, max_connect_attempts is {max}"),
                );
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

/// A listener's `downstream_cx_active` gauge, named after its address as Envoy names it.
fn listener_gauge(addr: SocketAddr) -> String {
    format!("listener.{}_{}.downstream_cx_active", addr.ip(), addr.port())
}
