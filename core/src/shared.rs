//! State shared by every worker of one process: what Envoy keeps process-wide.

use crate::config::{Config, NetworkFilter};
use crate::stats::{Counter, Gauge, Stats};
use crate::upstream::breaker::Breakers;

/// The only state workers share: the stats store and the stat handles into it. Built once from
/// the config and handed to every worker's [`crate::Proxy`] in an `Arc`.
pub struct Shared {
    pub stats: Stats,
    pub(crate) listeners: Vec<ListenerStats>,
    /// Per listener, what its network filter counts.
    filters: Vec<FilterStats>,
    pub(crate) clusters: Vec<ClusterStats>,
    /// Circuit breakers per cluster, process-wide.
    pub(crate) breakers: Vec<Breakers>,
    /// The machine's name (`%HOSTNAME%`), which only the driver can ask the OS for.
    pub(crate) hostname: Option<String>,
}

impl Shared {
    pub fn new(config: &Config) -> Shared {
        let stats = Stats::default();
        let listeners = config
            .listeners
            .iter()
            .map(|l| ListenerStats::new(&stats, &listener_stat_name(l.address)))
            .collect();
        let filters = config
            .listeners
            .iter()
            .map(|l| match &l.filter {
                NetworkFilter::HttpConnectionManager(hcm) => FilterStats::Http(
                    HttpStats::new(&stats, &hcm.stat_prefix),
                    Http2Stats::new(&stats, &format!("{}.http2", hcm.stat_prefix)),
                ),
                NetworkFilter::TcpProxy(tcp) => FilterStats::Tcp(TcpStats::new(&stats, &tcp.stat_prefix)),
            })
            .collect();
        let clusters = config.clusters.iter().map(|c| ClusterStats::new(&stats, &c.name)).collect();
        let breakers =
            config.clusters.iter().map(|c| Breakers::new(&stats, &c.name, &c.circuit_breakers)).collect();
        Shared { stats, listeners, filters, clusters, breakers, hostname: None }
    }
}

/// A listener's filter stats: its connection manager's (and HTTP/2 codec's), or its TCP
/// proxy's.
enum FilterStats {
    Http(HttpStats, Http2Stats),
    Tcp(TcpStats),
}

impl Shared {
    /// Names the machine for formats that print it (`%HOSTNAME%`).
    pub fn with_hostname(mut self, hostname: String) -> Shared {
        self.hostname = Some(hostname);
        self
    }

    /// The connection manager stats of an HTTP listener (`http.<prefix>.*`).
    pub(crate) fn http(&self, listener: usize) -> &HttpStats {
        match &self.filters[listener] {
            FilterStats::Http(http, _) => http,
            FilterStats::Tcp(_) => unreachable!("HTTP stats of a TCP proxy listener"),
        }
    }

    /// The HTTP/2 codec stats of an HTTP listener (`http.<prefix>.http2.*`).
    pub(crate) fn http2(&self, listener: usize) -> &Http2Stats {
        match &self.filters[listener] {
            FilterStats::Http(_, http2) => http2,
            FilterStats::Tcp(_) => unreachable!("HTTP/2 stats of a TCP proxy listener"),
        }
    }

    /// The stats of a TCP proxy listener (`tcp.<prefix>.*`).
    pub(crate) fn tcp(&self, listener: usize) -> &TcpStats {
        match &self.filters[listener] {
            FilterStats::Tcp(tcp) => tcp,
            FilterStats::Http(..) => unreachable!("TCP proxy stats of an HTTP listener"),
        }
    }
}

/// Envoy names listener stats after the address with `:` turned into `_`.
fn listener_stat_name(addr: std::net::SocketAddr) -> String {
    format!("{}_{}", addr.ip(), addr.port())
}

macro_rules! stat_struct {
    ($name:ident, $prefix:literal, counters { $($c:ident),* $(,)? }, gauges { $($g:ident),* $(,)? }) => {
        pub(crate) struct $name {
            $(pub(crate) $c: Counter,)*
            $(pub(crate) $g: Gauge,)*
        }

        impl $name {
            pub(crate) fn new(stats: &Stats, scope: &str) -> $name {
                $name {
                    $($c: stats.counter(&format!(concat!($prefix, ".{}.", stringify!($c)), scope)),)*
                    $($g: stats.gauge(&format!(concat!($prefix, ".{}.", stringify!($g)), scope)),)*
                }
            }
        }
    };
}

stat_struct!(ListenerStats, "listener", counters { downstream_cx_total }, gauges { downstream_cx_active });

stat_struct!(
    HttpStats,
    "http",
    counters {
        downstream_cx_total,
        downstream_cx_http1_total,
        downstream_cx_http2_total,
        downstream_cx_protocol_error,
        downstream_cx_rx_bytes_total,
        downstream_cx_tx_bytes_total,
        downstream_cx_upgrades_total,
        downstream_cx_destroy_remote,
        downstream_cx_destroy_local,
        downstream_rq_total,
        downstream_rq_http1_total,
        downstream_rq_http2_total,
        downstream_rq_1xx,
        downstream_rq_2xx,
        downstream_rq_3xx,
        downstream_rq_4xx,
        downstream_rq_5xx,
        downstream_rq_ws_on_non_ws_route,
        downstream_rq_too_many_premature_resets,
        downstream_rq_completed,
        downstream_rq_idle_timeout,
        downstream_rq_header_timeout,
        downstream_cx_idle_timeout,
    },
    gauges {
        downstream_cx_active,
        downstream_cx_http1_active,
        downstream_cx_http2_active,
        downstream_cx_upgrades_active,
        downstream_rq_active
    }
);

stat_struct!(
    Http2Stats,
    "http",
    counters { rx_reset, tx_reset, goaway_sent, keepalive_timeout },
    gauges { streams_active }
);

stat_struct!(
    TcpStats,
    "tcp",
    counters {
        downstream_cx_total,
        downstream_cx_rx_bytes_total,
        downstream_cx_tx_bytes_total,
        downstream_flow_control_paused_reading_total,
        downstream_flow_control_resumed_reading_total,
        idle_timeout,
        max_downstream_connection_duration,
        upstream_flush_total,
    },
    gauges {}
);

stat_struct!(
    ClusterStats,
    "cluster",
    counters {
        upstream_cx_total,
        upstream_cx_http1_total,
        upstream_cx_http2_total,
        upstream_cx_connect_fail,
        upstream_cx_connect_timeout,
        upstream_cx_connect_attempts_exceeded,
        upstream_cx_none_healthy,
        upstream_cx_overflow,
        upstream_cx_max_requests,
        upstream_cx_idle_timeout,
        upstream_cx_close_notify,
        upstream_cx_protocol_error,
        upstream_cx_destroy,
        upstream_cx_destroy_local,
        upstream_cx_destroy_remote,
        upstream_cx_destroy_with_active_rq,
        upstream_cx_destroy_local_with_active_rq,
        upstream_cx_destroy_remote_with_active_rq,
        upstream_cx_rx_bytes_total,
        upstream_cx_tx_bytes_total,
        upstream_rq_total,
        upstream_rq_completed,
        upstream_rq_pending_total,
        upstream_rq_pending_overflow,
        upstream_rq_pending_failure_eject,
        upstream_rq_active_overflow,
        upstream_rq_cancelled,
        upstream_rq_timeout,
        upstream_rq_retry,
        upstream_rq_1xx,
        upstream_rq_2xx,
        upstream_rq_3xx,
        upstream_rq_4xx,
        upstream_rq_5xx,
    },
    gauges { upstream_cx_active, upstream_rq_active, upstream_rq_pending_active }
);

impl ClusterStats {
    /// Counts an upstream response by status class (`upstream_rq_<N>xx`).
    pub(crate) fn response(&self, status: u16) {
        match status / 100 {
            1 => self.upstream_rq_1xx.inc(),
            2 => self.upstream_rq_2xx.inc(),
            3 => self.upstream_rq_3xx.inc(),
            4 => self.upstream_rq_4xx.inc(),
            _ => self.upstream_rq_5xx.inc(),
        }
    }
}

impl HttpStats {
    /// Counts a response by status class, as Envoy's `downstream_rq_<N>xx`.
    pub(crate) fn response(&self, status: u16) {
        match status / 100 {
            1 => self.downstream_rq_1xx.inc(),
            2 => self.downstream_rq_2xx.inc(),
            3 => self.downstream_rq_3xx.inc(),
            4 => self.downstream_rq_4xx.inc(),
            _ => self.downstream_rq_5xx.inc(),
        }
    }
}
