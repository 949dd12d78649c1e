//! The validated configuration the core runs on. Everything here has been checked: names
//! resolve, defaults are filled in, and values are in range.

use std::net::SocketAddr;
use std::time::Duration;

use crate::format::Format;

/// A whole bootstrap.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// Where access logs go, each destination once; [`AccessLog::sink`] indexes it.
    pub access_log_sinks: Vec<LogSink>,
}

/// An access log destination, opened by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    Stderr,
    /// Appended to (created if missing).
    File(String),
}

/// One access logger: a line in `format` per request (or TCP connection) to `sink`.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessLog {
    /// Index into [`Config::access_log_sinks`].
    pub sink: usize,
    pub format: Format,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    pub address: SocketAddr,
    /// The deprecated `access_log_path`, kept to warn that burrow writes no admin access log.
    pub access_log_path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketProtocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Always TCP: UDP (QUIC) listeners are refused at load time until HTTP/3 is supported.
    pub protocol: SocketProtocol,
    /// High watermark for bytes queued towards or from one connection (default 1 MiB).
    pub per_connection_buffer_limit_bytes: u32,
    /// The network filter of the listener's only filter chain.
    pub filter: NetworkFilter,
}

impl Listener {
    /// The listener's connection manager, if its filter is one.
    pub fn http(&self) -> Option<&HttpConnectionManager> {
        match &self.filter {
            NetworkFilter::HttpConnectionManager(hcm) => Some(hcm),
            NetworkFilter::TcpProxy(_) => None,
        }
    }

    /// The connection manager of an HTTP listener: only its HTTP sessions ask, so a TCP
    /// proxy listener never gets here.
    pub fn hcm(&self) -> &HttpConnectionManager {
        self.http().expect("an HTTP listener")
    }

    /// The TCP proxy of a TCP proxy listener (only its connections ask).
    pub fn tcp_proxy(&self) -> &TcpProxy {
        match &self.filter {
            NetworkFilter::TcpProxy(tcp) => tcp,
            NetworkFilter::HttpConnectionManager(_) => panic!("a TCP proxy listener"),
        }
    }
}

/// The network filter of a listener's filter chain: what its connections are.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkFilter {
    HttpConnectionManager(Box<HttpConnectionManager>),
    TcpProxy(Box<TcpProxy>),
}

/// `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`: each downstream connection goes to
/// an upstream connection of the cluster, or (with `tunneling_config`) into an HTTP tunnel.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpProxy {
    pub stat_prefix: String,
    /// `cluster` (weight 1), or `weighted_clusters`: picked per connection by weight.
    pub clusters: Vec<ClusterWeight>,
    /// No byte either way for this long ends the connection (default 1 h; zero disables).
    pub idle_timeout: Option<Duration>,
    /// Upstream attempts per connection before it is given up (default 1).
    pub max_connect_attempts: u32,
    /// The downstream connection is closed this long after it was accepted.
    pub max_downstream_connection_duration: Option<Duration>,
    pub tunneling: Option<Tunneling>,
    pub access_log: Vec<AccessLog>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWeight {
    /// Index into [`Config::clusters`].
    pub cluster: usize,
    pub weight: u32,
}

/// `tunneling_config`: the connection's bytes go to the cluster inside an HTTP request, a
/// CONNECT (or a POST) in the protocol the cluster speaks.
#[derive(Clone, Debug, PartialEq)]
pub struct Tunneling {
    /// The CONNECT authority (`:authority`, `host`), formatted per connection.
    pub hostname: Format,
    /// POST to `post_path` instead of CONNECT.
    pub use_post: bool,
    pub post_path: String,
    pub headers_to_add: Vec<HeaderToAdd>,
}

/// A header a tunnel request carries: its value formatted per connection.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderToAdd {
    /// Lower-cased.
    pub name: String,
    pub value: Format,
    pub action: HeaderAction,
    /// Sent even when the value formats to nothing.
    pub keep_empty: bool,
}

/// `append_action`: what a header to add does to one of the same name added before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderAction {
    Append,
    AddIfAbsent,
    Overwrite,
    OverwriteIfExists,
}

/// The downstream codec. `AUTO` serves HTTP/2 to a client whose first bytes are the HTTP/2
/// preface (prior knowledge, h2c) and HTTP/1.1 to others; `HTTP3` is refused at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
}

/// `http2_protocol_options` of a connection manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Options {
    /// Streams a client may have open at once (Envoy's default is 2^31-1; burrow's is 1024, a
    /// bound on what one connection can hold).
    pub max_concurrent_streams: u32,
    /// Request body bytes a stream may have in flight before the proxy reads them (Envoy's
    /// default is 256 MiB; burrow's 1 MiB, what an HTTP/1.1 connection may hold by default,
    /// so that a paused stream holds no more).
    pub initial_stream_window_size: u32,
    /// The same across the connection's streams (Envoy 256 MiB; burrow 16 MiB).
    pub initial_connection_window_size: u32,
    /// CONNECT and extended CONNECT (RFC 8441) are accepted.
    pub allow_connect: bool,
    /// `connection_keepalive`: a PING every `interval`, and the connection closes if one is
    /// not answered within `timeout`.
    pub keepalive: Option<Keepalive>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Http2Options {
    fn default() -> Http2Options {
        Http2Options {
            max_concurrent_streams: 1024,
            initial_stream_window_size: 1024 * 1024,
            initial_connection_window_size: 16 * 1024 * 1024,
            allow_connect: false,
            keepalive: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: CodecType,
    pub route_config: RouteConfig,
    /// Ends with the router.
    pub http_filters: Vec<HttpFilter>,
    pub upgrade_configs: Vec<UpgradeConfig>,
    pub http_protocol_options: Http1Options,
    pub http2_protocol_options: Http2Options,
    /// Limit on a request head, in KiB (default 60, at most 8192).
    pub max_request_headers_kb: u32,
    /// Limit on the number of request headers (default 100).
    pub max_headers_count: u32,
    /// `stream_idle_timeout` (default 5 minutes; zero disables).
    pub stream_idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout` for downstream connections (default 1 h;
    /// zero disables).
    pub idle_timeout: Option<Duration>,
    /// `request_headers_timeout`: a request head must be complete this long after its first
    /// byte arrived, or it is answered 408 and the connection closed (default none; zero
    /// disables).
    pub request_headers_timeout: Option<Duration>,
    /// Append the peer address to `x-forwarded-for` and trust it as the client (default false).
    pub use_remote_address: bool,
    /// Add `x-request-id` when absent (default true).
    pub generate_request_id: bool,
    /// `server_name` (default "envoy").
    pub server_name: String,
    pub access_log: Vec<AccessLog>,
}

/// One entry of an HTTP filter chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFilter {
    /// The filter's `name`, which `typed_per_filter_config` refers to.
    pub name: String,
    pub kind: HttpFilterKind,
    /// `disabled: true` in the chain: off unless a route enables it.
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpFilterKind {
    Router,
    /// `envoy.extensions.filters.http.buffer.v3.Buffer`: buffers a whole request body,
    /// answering 413 past `max_request_bytes`.
    Buffer {
        max_request_bytes: u32,
    },
}

/// An HCM-level upgrade entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeConfig {
    /// As written; compared case-insensitively.
    pub upgrade_type: String,
    pub enabled: bool,
    /// A chain of its own for this upgrade type (ends with the router); `None`: the
    /// connection manager's `http_filters`.
    pub filters: Option<Vec<HttpFilter>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http1Options {
    /// Accept HTTP/1.0 requests (Envoy answers 426 when false, the default).
    pub accept_http_10: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-cased; `*`, `*.suffix` and `prefix.*` wildcards as written.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub matcher: RouteMatch,
    pub action: RouteAction,
    /// Names of HTTP filters turned off on this route (`typed_per_filter_config` with
    /// `envoy.config.route.v3.FilterConfig{disabled: true}`).
    pub disabled_filters: Vec<String>,
    /// Names of chain filters marked `disabled` that this route turns on
    /// (`FilterConfig{disabled: false}`).
    pub enabled_filters: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatcher>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Path(String),
    /// `safe_regex`: the whole path (without the query) must match.
    Regex(Regex),
    /// Matches CONNECT requests only (`connect_matcher: {}`).
    Connect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Lower-cased; may be a pseudo-header such as `:method` or `:authority`.
    pub name: String,
    pub rule: HeaderRule,
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderRule {
    Exact {
        value: String,
        ignore_case: bool,
    },
    Prefix {
        value: String,
        ignore_case: bool,
    },
    Suffix {
        value: String,
        ignore_case: bool,
    },
    Contains {
        value: String,
        ignore_case: bool,
    },
    /// `string_match.safe_regex`: the whole value must match.
    Regex(Regex),
    Present(bool),
}

/// A compiled `safe_regex` (RE2 syntax, which the `regex` crate follows), anchored at both
/// ends as Envoy matches it.
#[derive(Clone, Debug)]
pub struct Regex {
    pub source: String,
    pub compiled: regex::Regex,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.source == other.source
    }
}

impl Eq for Regex {}

#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    Route(RouteTarget),
    /// `direct_response`: answered by the proxy itself.
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

impl RouteAction {
    /// Where the route forwards to; `None` for a direct response.
    pub fn target(&self) -> Option<&RouteTarget> {
        match self {
            RouteAction::Route(target) => Some(target),
            RouteAction::DirectResponse { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteTarget {
    /// Index into [`Config::clusters`].
    pub cluster: usize,
    pub upgrade_configs: Vec<RouteUpgradeConfig>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite_literal: Option<String>,
    /// `timeout` for the whole upstream response (default 15 s; zero disables).
    pub timeout: Option<Duration>,
    /// `idle_timeout` of the stream, overriding the connection manager's
    /// `stream_idle_timeout` (zero disables).
    pub idle_timeout: Option<Option<Duration>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteUpgradeConfig {
    pub upgrade_type: String,
    pub enabled: bool,
    /// Present: terminate (CONNECT to raw TCP) instead of proxying the request.
    pub connect_config: Option<ConnectConfig>,
}

/// A route upgrade's `connect_config`: its presence means "terminate". `proxy_protocol_config`
/// is not supported yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectConfig {
    /// A POST on the route is terminated too, as if it were a CONNECT (Envoy C8; HTTP/2
    /// clients, whose POST body is the tunnel's bytes).
    pub allow_post: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub dns_lookup_family: Family,
    pub dns_refresh_rate: Duration,
    pub endpoints: Vec<Endpoint>,
    pub per_connection_buffer_limit_bytes: u32,
    pub protocol: UpstreamProtocol,
    pub max_requests_per_connection: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub circuit_breakers: Thresholds,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    Static,
    StrictDns,
    LogicalDns,
    OriginalDst { use_http_header: bool, http_header_name: Option<String> },
}

/// `LEAST_REQUEST` and `RANDOM` are refused at load time until they are implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    ClusterProvided,
}

/// Which of a name's addresses a cluster uses (Envoy's `dns_lookup_family`). The driver
/// resolves every address of both families; the core applies this to the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv6 addresses if there are any, else IPv4 (Envoy's default).
    #[default]
    Auto,
    V4Only,
    V6Only,
    /// IPv4 addresses if there are any, else IPv6.
    V4Preferred,
    /// Every address, IPv4 first.
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An IP literal.
    Ip(SocketAddr),
    /// A name for DNS clusters.
    Dns { host: String, port: u16 },
}

/// The upstream protocol: HTTP/1.1 only for now (HTTP/2 options are refused at load time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// Streams multiplexed on each connection, as many as the smaller of
    /// `max_concurrent_streams` and the peer's SETTINGS allow.
    Http2(Http2Options),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds { max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 }
    }
}
