//! Upstream clusters at run time: which address a new connection goes to, and DNS.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::{Cluster, Config, Discovery, Endpoint, LbPolicy};
use crate::io::{ConnId, Output, QueryId};
use crate::pool::PoolLimits;
use crate::timers::{Timer, Timers};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueryOwner {
    /// A DNS cluster's refresh; the cluster's hosts were updated.
    Cluster,
    /// A connection resolving its original-destination name.
    Conn(ConnId),
}

enum Query {
    Cluster { cluster: usize, endpoint: usize },
    Conn(ConnId),
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
        let (host, family) = (host.clone(), c.dns_lookup_family);
        let query = QueryId(self.queries.insert(Query::Cluster { cluster, endpoint }) as u32);
        Output::Resolve { query, host, family }
    }

    /// Resolves a name for a connection (original destination by name).
    pub(crate) fn resolve_for(&mut self, conn: ConnId, cluster: usize, host: String) -> (QueryId, Output) {
        let family = self.clusters[cluster].config.dns_lookup_family;
        let query = QueryId(self.queries.insert(Query::Conn(conn)) as u32);
        (query, Output::Resolve { query, host, family })
    }

    /// Records an answer; returns whom it was for.
    pub(crate) fn resolved(&mut self, query: QueryId, addrs: &[IpAddr]) -> Option<QueryOwner> {
        match self.queries.try_remove(query.0 as usize)? {
            Query::Conn(conn) => Some(QueryOwner::Conn(conn)),
            Query::Cluster { cluster, endpoint } => {
                let state = &mut self.clusters[cluster];
                let Endpoint::Dns { port, .. } = state.config.endpoints[endpoint] else { return None };
                // Keep the previous answer if the name stopped resolving, as Envoy does.
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
        let hosts: Vec<SocketAddr> = state.hosts.iter().flatten().copied().collect();
        if hosts.is_empty() {
            return Pick::NoHost;
        }
        let index = match state.config.lb_policy {
            LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
                state.next = state.next.wrapping_add(1);
                state.next % hosts.len()
            }
        };
        Pick::Addr(hosts[index])
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
        PoolLimits {
            connect_timeout: c.connect_timeout,
            idle_timeout: c.idle_timeout,
            max_requests_per_connection: c.max_requests_per_connection,
        }
    }

    pub(crate) fn buffer_limit(&self, cluster: usize) -> usize {
        self.clusters[cluster].config.per_connection_buffer_limit_bytes as usize
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
