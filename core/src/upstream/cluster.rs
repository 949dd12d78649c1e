//! Upstream clusters at run time: which address a new connection goes to, and DNS.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::{Cluster, Config, Discovery, Endpoint, Family, Http2Options, LbPolicy, UpstreamProtocol};
use crate::io::{ConnId, Output, QueryId};
use crate::timers::{Timer, Timers};
use crate::upstream::pool::{client_settings, PoolLimits};

/// Where a new upstream connection should go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    Addr(SocketAddr),
    /// An original-destination name that must be resolved first.
    Resolve {
        host: String,
        port: u16,
    },
    /// No host to connect to (Envoy: "no healthy upstream").
    NoHost,
}

/// Who asked for a resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QueryOwner {
    /// A DNS cluster's refresh; the cluster's hosts were updated.
    Cluster,
    /// A connection resolving its original-destination name, with the addresses its cluster's
    /// `dns_lookup_family` keeps from the answer, in the order to try them (empty: none).
    Conn(ConnId, Vec<IpAddr>),
}

/// An outstanding resolution; `cluster`'s `dns_lookup_family` applies to its answer.
enum Query {
    Cluster { cluster: usize, endpoint: usize },
    Conn { conn: ConnId, cluster: usize },
}

/// Per-worker state of every cluster.
pub(crate) struct Clusters {
    clusters: Vec<ClusterState>,
    queries: slab::Slab<Query>,
}

struct ClusterState {
    config: Cluster,
    /// Resolved addresses per endpoint (IP endpoints are "resolved" from the start).
    hosts: Vec<Vec<SocketAddr>>,
    /// Endpoints whose first resolution is still outstanding.
    warming: usize,
    next: usize,
}

impl Clusters {
    pub(crate) fn new(config: &Config) -> Clusters {
        let clusters = config
            .clusters
            .iter()
            .map(|c| ClusterState {
                hosts: c
                    .endpoints
                    .iter()
                    .map(|e| match e {
                        Endpoint::Ip(addr) => vec![*addr],
                        Endpoint::Dns { .. } => Vec::new(),
                    })
                    .collect(),
                warming: 0,
                next: 0,
                config: c.clone(),
            })
            .collect();
        Clusters { clusters, queries: slab::Slab::new() }
    }

    /// Sends the first resolution of every DNS endpoint.
    pub(crate) fn start(&mut self, now: Instant, timers: &mut Timers, out: &mut Vec<Output>) {
        for cluster in 0..self.clusters.len() {
            let names = self.dns_endpoints(cluster);
            self.clusters[cluster].warming = names.len();
            for endpoint in names {
                out.push(self.resolve_endpoint(cluster, endpoint));
            }
            if self.clusters[cluster].warming > 0 {
                timers.set(now + self.clusters[cluster].config.dns_refresh_rate, Timer::DnsRefresh(cluster));
            }
        }
    }

    /// True when no cluster waits for its first DNS answer.
    pub(crate) fn warm(&self) -> bool {
        self.clusters.iter().all(|c| c.warming == 0)
    }

    /// Re-resolves every name of a DNS cluster, unless the previous refresh is still out.
    pub(crate) fn refresh(&mut self, cluster: usize, now: Instant, timers: &mut Timers) -> Vec<Output> {
        timers.set(now + self.clusters[cluster].config.dns_refresh_rate, Timer::DnsRefresh(cluster));
        let outstanding =
            self.queries.iter().any(|(_, q)| matches!(q, Query::Cluster { cluster: c, .. } if *c == cluster));
        if outstanding {
            return Vec::new();
        }
        self.dns_endpoints(cluster).into_iter().map(|e| self.resolve_endpoint(cluster, e)).collect()
    }

    fn dns_endpoints(&self, cluster: usize) -> Vec<usize> {
        let c = &self.clusters[cluster];
        if !matches!(c.config.discovery, Discovery::StrictDns | Discovery::LogicalDns) {
            return Vec::new();
        }
        (0..c.config.endpoints.len())
            .filter(|&e| matches!(c.config.endpoints[e], Endpoint::Dns { .. }))
            .collect()
    }

    fn resolve_endpoint(&mut self, cluster: usize, endpoint: usize) -> Output {
        let c = &self.clusters[cluster].config;
        let Endpoint::Dns { host, .. } = &c.endpoints[endpoint] else { unreachable!("not a DNS endpoint") };
        let host = host.clone();
        let query = QueryId(self.queries.insert(Query::Cluster { cluster, endpoint }) as u32);
        Output::Resolve { query, host }
    }

    /// Resolves a name for a connection (original destination by name).
    pub(crate) fn resolve_for(&mut self, conn: ConnId, cluster: usize, host: String) -> (QueryId, Output) {
        let query = QueryId(self.queries.insert(Query::Conn { conn, cluster }) as u32);
        (query, Output::Resolve { query, host })
    }

    /// Records an answer (every address the resolver gave, both families) and applies the
    /// asking cluster's `dns_lookup_family` to it; returns whom it was for.
    pub(crate) fn resolved(&mut self, query: QueryId, addrs: &[IpAddr]) -> Option<QueryOwner> {
        match self.queries.try_remove(query.0 as usize)? {
            Query::Conn { conn, cluster } => {
                let family = self.clusters[cluster].config.dns_lookup_family;
                Some(QueryOwner::Conn(conn, by_family(addrs, family)))
            }
            Query::Cluster { cluster, endpoint } => {
                let state = &mut self.clusters[cluster];
                let Endpoint::Dns { port, .. } = state.config.endpoints[endpoint] else { return None };
                let addrs = by_family(addrs, state.config.dns_lookup_family);
                // Keep the previous answer if the name stopped resolving (or has no address of
                // the families the cluster uses), as Envoy does.
                if !addrs.is_empty() {
                    let mut hosts: Vec<SocketAddr> =
                        addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
                    if state.config.discovery == Discovery::LogicalDns {
                        hosts.truncate(1);
                    }
                    state.hosts[endpoint] = hosts;
                }
                state.warming = state.warming.saturating_sub(1);
                Some(QueryOwner::Cluster)
            }
        }
    }

    /// Chooses the address for a new connection. `header` is the original-destination header
    /// value when the cluster reads one; `local` the downstream connection's local address.
    pub(crate) fn pick(&mut self, cluster: usize, header: Option<&[u8]>, local: SocketAddr) -> Pick {
        let state = &mut self.clusters[cluster];
        if let Discovery::OriginalDst { use_http_header, .. } = &state.config.discovery {
            if !use_http_header {
                return Pick::Addr(local);
            }
            return match header.and_then(|h| std::str::from_utf8(h).ok()) {
                Some(authority) => original_destination(authority),
                None => Pick::NoHost,
            };
        }
        // Every endpoint's addresses in order, counted and indexed in place: no list per pick.
        let count: usize = state.hosts.iter().map(Vec::len).sum();
        if count == 0 {
            return Pick::NoHost;
        }
        let index = match state.config.lb_policy {
            LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
                state.next = state.next.wrapping_add(1);
                state.next % count
            }
        };
        state.hosts.iter().flatten().nth(index).map_or(Pick::NoHost, |addr| Pick::Addr(*addr))
    }

    /// The header an original-destination cluster reads its target from, if any.
    pub(crate) fn original_dst_header(&self, cluster: usize) -> Option<&str> {
        match &self.clusters[cluster].config.discovery {
            Discovery::OriginalDst { use_http_header: true, http_header_name } => {
                Some(http_header_name.as_deref().unwrap_or("x-envoy-original-dst-host"))
            }
            _ => None,
        }
    }

    pub(crate) fn connect_timeout(&self, cluster: usize) -> std::time::Duration {
        self.clusters[cluster].config.connect_timeout
    }

    pub(crate) fn pool_limits(&self, cluster: usize) -> PoolLimits {
        let c = &self.clusters[cluster].config;
        let (max_concurrent_streams, http2) = match &c.protocol {
            UpstreamProtocol::Http2(options) => {
                (options.max_concurrent_streams as usize, client_settings(options))
            }
            UpstreamProtocol::Http1 => (1, client_settings(&Http2Options::default())),
        };
        PoolLimits {
            connect_timeout: c.connect_timeout,
            idle_timeout: c.idle_timeout,
            max_requests_per_connection: c.max_requests_per_connection,
            max_concurrent_streams,
            http2,
            buffer_limit: c.per_connection_buffer_limit_bytes as usize,
        }
    }

    pub(crate) fn buffer_limit(&self, cluster: usize) -> usize {
        self.clusters[cluster].config.per_connection_buffer_limit_bytes as usize
    }
}

/// Applies Envoy's `dns_lookup_family` to a resolver's answer: `V4Only` and `V6Only` keep one
/// family, `Auto` IPv6 if there is any, else IPv4, `V4Preferred` the reverse, `All` both
/// (IPv4 first). Duplicates are dropped; within a family the resolver's order is kept.
fn by_family(addrs: &[IpAddr], family: Family) -> Vec<IpAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for &addr in addrs {
        let list = if addr.is_ipv4() { &mut v4 } else { &mut v6 };
        if !list.contains(&addr) {
            list.push(addr);
        }
    }
    match family {
        Family::V4Only => v4,
        Family::V6Only => v6,
        Family::Auto if v6.is_empty() => v4,
        Family::Auto => v6,
        Family::V4Preferred if v4.is_empty() => v6,
        Family::V4Preferred => v4,
        Family::All => {
            v4.extend(v6);
            v4
        }
    }
}

/// `host:port` from an authority: an IP literal is used as is; a name is resolved first
/// (Envoy only accepts IP literals here; burrow resolves names so a forward proxy works).
fn original_destination(authority: &str) -> Pick {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Pick::Addr(addr);
    }
    let Some((host, port)) = authority.rsplit_once(':') else { return Pick::NoHost };
    match (port.parse::<u16>(), host.is_empty() || host.starts_with('[')) {
        (Ok(port), false) => Pick::Resolve { host: host.to_string(), port },
        _ => Pick::NoHost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FAMILIES: [Family; 5] =
        [Family::Auto, Family::V4Only, Family::V6Only, Family::V4Preferred, Family::All];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn by_family_applies_envoys_dns_lookup_family() {
        let (a, b, c, d) = (ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.2"), ip("fd00::2"));
        let mixed = [b, a, b, c, d, a];
        assert_eq!(by_family(&mixed, Family::V4Only), [a, c]);
        assert_eq!(by_family(&mixed, Family::V6Only), [b, d]);
        assert_eq!(by_family(&mixed, Family::Auto), [b, d]);
        assert_eq!(by_family(&mixed, Family::V4Preferred), [a, c]);
        assert_eq!(by_family(&mixed, Family::All), [a, c, b, d]);
        // With one family only, the preferences fall back and the strict ones may be empty.
        assert_eq!(by_family(&[a, c], Family::Auto), [a, c]);
        assert_eq!(by_family(&[d, b], Family::V4Preferred), [d, b]);
        assert!(by_family(&[a, c], Family::V6Only).is_empty());
        assert!(by_family(&[b], Family::V4Only).is_empty());
        for family in FAMILIES {
            assert!(by_family(&[], family).is_empty());
        }
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        // Few distinct values, so answers repeat addresses.
        prop_oneof![
            (0u8..4).prop_map(|n| IpAddr::from([10, 0, 0, n])),
            (0u16..4).prop_map(|n| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, n])),
        ]
    }

    proptest! {
        /// The kept addresses come from the answer, are of the families the policy allows,
        /// appear once each, and are there whenever the answer has an allowed address.
        #[test]
        fn by_family_keeps_allowed_addresses_of_the_answer(
            answer in prop::collection::vec(addr(), 0..8),
            which in 0usize..5,
        ) {
            let family = FAMILIES[which];
            let kept = by_family(&answer, family);
            let (has_v4, has_v6) = (answer.iter().any(IpAddr::is_ipv4), answer.iter().any(IpAddr::is_ipv6));
            let allowed = |a: &IpAddr| match family {
                Family::V4Only => a.is_ipv4(),
                Family::V6Only => a.is_ipv6(),
                Family::Auto => a.is_ipv6() || !has_v6,
                Family::V4Preferred => a.is_ipv4() || !has_v4,
                Family::All => true,
            };
            prop_assert!(kept.iter().all(|a| answer.contains(a)), "not a subset: {:?}", kept);
            prop_assert!(kept.iter().all(allowed), "a disallowed family: {:?}", kept);
            for (i, a) in kept.iter().enumerate() {
                prop_assert!(!kept[..i].contains(a), "duplicate {}", a);
            }
            prop_assert_eq!(kept.is_empty(), !answer.iter().any(allowed));
            // Every allowed address is kept, in the resolver's order within its family.
            let mut expected: Vec<IpAddr> = Vec::new();
            for v4 in [true, false] {
                for a in answer.iter().filter(|a| allowed(a) && a.is_ipv4() == v4) {
                    if !expected.contains(a) {
                        expected.push(*a);
                    }
                }
            }
            prop_assert_eq!(kept, expected);
        }
    }

    fn config(family: &str) -> Config {
        let yaml = format!(
            r#"
static_resources:
  clusters:
  - name: strict
    type: STRICT_DNS
    {family}
    load_assignment:
      cluster_name: strict
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: strict.test, port_value: 80 }} }} }} }}] }}]
  - name: logical
    type: LOGICAL_DNS
    {family}
    load_assignment:
      cluster_name: logical
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: logical.test, port_value: 81 }} }} }} }}] }}]
  - name: odst
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    {family}
    original_dst_lb_config: {{ use_http_header: true }}
"#
        );
        Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the clusters and answers the first query of each DNS cluster with `answer`.
    fn answered(config: &Config, answer: &[IpAddr]) -> Clusters {
        let mut clusters = Clusters::new(config);
        let mut out = Vec::new();
        clusters.start(burrow_sim::epoch(), &mut Timers::default(), &mut out);
        assert_eq!(out.len(), 2);
        for output in out {
            let Output::Resolve { query, .. } = output else { panic!("{output:?}") };
            assert_eq!(clusters.resolved(query, answer), Some(QueryOwner::Cluster));
        }
        assert!(clusters.warm());
        clusters
    }

    /// Every address a cluster's picks reach (two rounds of round robin).
    fn picks(clusters: &mut Clusters, cluster: usize) -> Vec<SocketAddr> {
        let local = "127.0.0.1:1".parse().unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            match clusters.pick(cluster, None, local) {
                Pick::Addr(addr) if !seen.contains(&addr) => seen.push(addr),
                Pick::Addr(_) => {}
                other => panic!("{other:?}"),
            }
        }
        seen.sort();
        seen
    }

    fn socket(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        v.sort();
        v
    }

    #[test]
    fn dns_clusters_and_original_destination_names_apply_the_clusters_family() {
        let (a, b, c, d) = (ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.2"), ip("fd00::2"));
        let mixed = [b, a, d, c, b];
        let cases = [
            ("", vec![b, d]),
            ("dns_lookup_family: AUTO", vec![b, d]),
            ("dns_lookup_family: V4_ONLY", vec![a, c]),
            ("dns_lookup_family: V6_ONLY", vec![b, d]),
            ("dns_lookup_family: V4_PREFERRED", vec![a, c]),
            ("dns_lookup_family: ALL", vec![a, c, b, d]),
        ];
        for (line, kept) in cases {
            let config = config(line);
            let mut clusters = answered(&config, &mixed);
            // A strict DNS cluster uses every kept address; a logical one the first only.
            assert_eq!(picks(&mut clusters, 0), socket(&kept, 80), "{line}");
            assert_eq!(picks(&mut clusters, 1), socket(&kept[..1], 81), "{line}");
            // A connection's own resolution gets the kept addresses, in order.
            let (query, output) = clusters.resolve_for(ConnId(3), 2, "name.test".into());
            assert_eq!(output, Output::Resolve { query, host: "name.test".into() });
            assert_eq!(
                clusters.resolved(query, &mixed),
                Some(QueryOwner::Conn(ConnId(3), kept.clone())),
                "{line}"
            );
        }
    }

    #[test]
    fn an_answer_without_an_allowed_family_keeps_the_previous_hosts() {
        let (a, b) = (ip("10.0.0.1"), ip("fd00::1"));
        let v4_only = config("dns_lookup_family: V4_ONLY");
        let mut clusters = answered(&v4_only, &[a]);
        let mut timers = Timers::default();
        let refresh = clusters.refresh(0, burrow_sim::epoch(), &mut timers);
        let [Output::Resolve { query, .. }] = refresh.as_slice() else { panic!("{refresh:?}") };
        assert_eq!(clusters.resolved(*query, &[b]), Some(QueryOwner::Cluster));
        assert_eq!(picks(&mut clusters, 0), socket(&[a], 80));
        // A first answer with no allowed address leaves the cluster without hosts (but warm).
        let v6_only = config("dns_lookup_family: V6_ONLY");
        let mut clusters = answered(&v6_only, &[a]);
        assert_eq!(clusters.pick(0, None, "127.0.0.1:1".parse().unwrap()), Pick::NoHost);
        let (query, _) = clusters.resolve_for(ConnId(1), 2, "v4.test".into());
        assert_eq!(clusters.resolved(query, &[a]), Some(QueryOwner::Conn(ConnId(1), Vec::new())));
    }

    #[test]
    fn original_destination_takes_ip_literals_and_resolves_names() {
        assert_eq!(original_destination("127.0.0.1:8080"), Pick::Addr("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(original_destination("[::1]:443"), Pick::Addr("[::1]:443".parse().unwrap()));
        assert_eq!(
            original_destination("example.test:80"),
            Pick::Resolve { host: "example.test".into(), port: 80 }
        );
        assert_eq!(original_destination("example.test"), Pick::NoHost);
        assert_eq!(original_destination(":80"), Pick::NoHost);
        assert_eq!(original_destination("[::1]:x"), Pick::NoHost);
    }
}
