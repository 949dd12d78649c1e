//! Serde mirrors of the Envoy v3 messages burrow reads, as written in YAML/JSON. Every struct
//! rejects unknown fields. `typed_config` bodies stay [`Value`]s here: the loader reads their
//! `@type` and decodes the matching message, so errors inside them keep their full path.
//!
//! Type names follow Envoy's message names because serde quotes them in errors
//! ("expected struct SocketAddress").

use std::fmt;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Deserializes `null` as the default (protobuf JSON treats `null` as "not set").
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// A protobuf `uint32`: a JSON number or a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct U32(pub u32);

impl<'de> Deserialize<'de> for U32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<U32, D::Error> {
        d.deserialize_any(UintVisitor { max: u32::MAX.into(), what: "uint32" }).map(|v| U32(v as u32))
    }
}

/// A protobuf `int64`/`uint64` seconds count: a JSON number or a decimal string.
struct Seconds(u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        d.deserialize_any(UintVisitor { max: MAX_DURATION_SECONDS, what: "seconds" }).map(Seconds)
    }
}

struct Nanos(u32);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        d.deserialize_any(UintVisitor { max: 999_999_999, what: "nanos" }).map(|v| Nanos(v as u32))
    }
}

struct UintVisitor {
    max: u64,
    what: &'static str,
}

impl UintVisitor {
    fn check<E: de::Error>(&self, v: u64) -> Result<u64, E> {
        if v <= self.max {
            Ok(v)
        } else {
            Err(E::custom(format!("{v} is out of range for {} (at most {})", self.what, self.max)))
        }
    }
}

impl Visitor<'_> for UintVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a non-negative integer ({}), as a number or a decimal string", self.what)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.check(v),
            Err(_) => Err(E::custom(format!("{v} is negative; {} must be non-negative", self.what))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v.fract() == 0.0 && v >= 0.0 && v <= self.max as f64 {
            Ok(v as u64)
        } else {
            Err(E::custom(format!("{v} is not a valid {}", self.what)))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        match v.parse::<u64>() {
            Ok(n) => self.check(n),
            Err(_) => Err(E::custom(format!("'{v}' is not a valid {}", self.what))),
        }
    }
}

/// `google.protobuf.Duration`'s largest value, in seconds (10,000 years).
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

/// A `google.protobuf.Duration`: a string such as `"5s"` or `"0.25s"`, or `{seconds, nanos}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub StdDuration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        d.deserialize_any(DurVisitor)
    }
}

struct DurVisitor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DurationMap {
    seconds: Option<Seconds>,
    nanos: Option<Nanos>,
}

const DURATION_HINT: &str = "expected a duration such as \"5s\" or \"0.25s\"";

impl<'de> Visitor<'de> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DURATION_HINT)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).map_err(|why| E::custom(format!("invalid duration '{v}': {why}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        Err(E::custom(format!("invalid duration {v}: {DURATION_HINT} (a string with an 's' suffix)")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        Err(E::custom(format!("invalid duration {v}: {DURATION_HINT} (a string with an 's' suffix)")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
        Err(E::custom(format!("invalid duration {v}: {DURATION_HINT} (a string with an 's' suffix)")))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Dur, A::Error> {
        let m = DurationMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let secs = m.seconds.map_or(0, |s| s.0);
        let nanos = m.nanos.map_or(0, |n| n.0);
        Ok(Dur(StdDuration::new(secs, nanos)))
    }
}

/// Parses protobuf JSON's duration form: decimal seconds with up to nine fractional digits and an
/// `s` suffix.
pub fn parse_duration(s: &str) -> Result<StdDuration, String> {
    let Some(number) = s.strip_suffix('s') else {
        return Err(format!("missing the 's' suffix; {DURATION_HINT}"));
    };
    if number.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
        return Err(DURATION_HINT.into());
    }
    if frac.len() > 9 {
        return Err("more than nine fractional digits".into());
    }
    let secs: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| "too large".to_string())? };
    if secs > MAX_DURATION_SECONDS {
        return Err("too large".into());
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().expect("nine digits") };
    Ok(StdDuration::new(secs, nanos))
}

/// A message with no fields burrow reads (`connect_matcher: {}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------------
// Bootstrap

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    pub admin: Option<Admin>,
    pub static_resources: Option<StaticResources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub address: Option<Address>,
    /// Deprecated in Envoy and still in its example configs: accepted, with a warning that
    /// burrow writes no admin access log.
    pub access_log_path: Option<String>,
    /// Not supported yet; read so that the error can say so.
    pub access_log: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResources {
    #[serde(default, deserialize_with = "nullable")]
    pub listeners: Vec<Listener>,
    #[serde(default, deserialize_with = "nullable")]
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub socket_address: Option<SocketAddress>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketAddress {
    pub protocol: Option<Protocol>,
    pub address: String,
    pub port_value: Option<U32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
}

// ---------------------------------------------------------------------------------------------
// Listener

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: Option<String>,
    pub address: Option<Address>,
    pub per_connection_buffer_limit_bytes: Option<U32>,
    #[serde(default, deserialize_with = "nullable")]
    pub filter_chains: Vec<FilterChain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChain {
    /// Accepted; only meaningful with several chains.
    #[allow(dead_code)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub filters: Vec<Filter>,
}

/// A network filter: a name and a `typed_config` whose `@type` selects the message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    pub typed_config: Option<Value>,
}

/// An HTTP filter (`HttpFilter`): a network filter's fields plus `disabled`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFilter {
    #[serde(default)]
    pub name: String,
    pub typed_config: Option<Value>,
    pub disabled: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// TCP proxy

/// `envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProxy {
    #[serde(default)]
    pub stat_prefix: String,
    pub cluster: Option<String>,
    pub weighted_clusters: Option<WeightedClusters>,
    pub idle_timeout: Option<Dur>,
    pub max_connect_attempts: Option<U32>,
    pub max_downstream_connection_duration: Option<Dur>,
    pub tunneling_config: Option<TunnelingConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pub access_log: Vec<AccessLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedClusters {
    #[serde(default, deserialize_with = "nullable")]
    pub clusters: Vec<ClusterWeight>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterWeight {
    #[serde(default)]
    pub name: String,
    pub weight: Option<U32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelingConfig {
    #[serde(default)]
    pub hostname: String,
    pub use_post: Option<bool>,
    pub post_path: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub headers_to_add: Vec<HeaderValueOption>,
}

/// `config.core.v3.HeaderValueOption`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOption {
    pub header: Option<HeaderValue>,
    /// Deprecated: `false` means overwrite.
    pub append: Option<bool>,
    pub append_action: Option<AppendAction>,
    pub keep_empty_value: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

/// `config.accesslog.v3.AccessLog`: a logger's name and its typed config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Accepted; the typed config says which logger it is.
    #[allow(dead_code)]
    pub name: Option<String>,
    /// Not supported yet; read so that the error can say so.
    pub filter: Option<Value>,
    pub typed_config: Option<Value>,
}

/// `StdoutAccessLog` and `StderrAccessLog`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAccessLog {
    pub log_format: Option<SubstitutionFormatString>,
}

/// `FileAccessLog`, with its deprecated format fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    #[serde(default)]
    pub path: String,
    pub format: Option<String>,
    pub json_format: Option<Map<String, Value>>,
    pub log_format: Option<SubstitutionFormatString>,
}

/// `config.core.v3.SubstitutionFormatString`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstitutionFormatString {
    pub text_format: Option<String>,
    pub text_format_source: Option<DataSource>,
    pub json_format: Option<Map<String, Value>>,
    pub omit_empty_values: Option<bool>,
    /// Only meaningful for local reply bodies: accepted.
    #[allow(dead_code)]
    pub content_type: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// HTTP connection manager

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: Option<CodecType>,
    pub route_config: Option<RouteConfiguration>,
    #[serde(default, deserialize_with = "nullable")]
    pub http_filters: Vec<HttpFilter>,
    #[serde(default, deserialize_with = "nullable")]
    pub upgrade_configs: Vec<UpgradeConfig>,
    pub http_protocol_options: Option<Http1ProtocolOptions>,
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
    pub max_request_headers_kb: Option<U32>,
    pub common_http_protocol_options: Option<DownstreamCommonHttpProtocolOptions>,
    pub stream_idle_timeout: Option<Dur>,
    /// Only zero (disabled) is supported yet.
    pub request_timeout: Option<Dur>,
    pub request_headers_timeout: Option<Dur>,
    pub use_remote_address: Option<bool>,
    pub generate_request_id: Option<bool>,
    pub server_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub access_log: Vec<AccessLog>,
}

/// `envoy.config.core.v3.Http2ProtocolOptions`, the fields burrow acts on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2ProtocolOptions {
    pub max_concurrent_streams: Option<U32>,
    pub initial_stream_window_size: Option<U32>,
    pub initial_connection_window_size: Option<U32>,
    pub allow_connect: Option<bool>,
    pub connection_keepalive: Option<KeepaliveSettings>,
}

/// `envoy.config.core.v3.KeepaliveSettings`: PINGs every `interval`, answered within
/// `timeout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveSettings {
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
    Http3,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeConfig {
    #[serde(default)]
    pub upgrade_type: String,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub filters: Vec<HttpFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http1ProtocolOptions {
    pub accept_http_10: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamCommonHttpProtocolOptions {
    pub max_headers_count: Option<U32>,
    pub idle_timeout: Option<Dur>,
}

/// `envoy.extensions.filters.http.router.v3.Router`: none of its options are supported yet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {}

/// `envoy.extensions.filters.http.buffer.v3.Buffer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffer {
    pub max_request_bytes: Option<U32>,
}

/// `envoy.extensions.filters.http.buffer.v3.BufferPerRoute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferPerRoute {
    pub disabled: Option<bool>,
    pub buffer: Option<Value>,
}

/// `envoy.config.route.v3.FilterConfig`, a route's generic per-filter switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub config: Option<Value>,
    /// Accepted; burrow knows every filter its chains can name.
    #[allow(dead_code)]
    pub is_optional: Option<bool>,
    pub disabled: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Routes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfiguration {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub domains: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Vec<Route>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Accepted; burrow does not use route names.
    #[allow(dead_code)]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RouteMatch>,
    pub route: Option<RouteAction>,
    pub direct_response: Option<DirectResponseAction>,
    /// Not supported; read so that the error can say so.
    pub redirect: Option<Value>,
    /// Filter name → typed message (`FilterConfig` or a filter's own per-route message).
    pub typed_per_filter_config: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponseAction {
    pub status: Option<U32>,
    pub body: Option<DataSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub inline_string: Option<String>,
    pub inline_bytes: Option<Value>,
    pub filename: Option<Value>,
    pub environment_variable: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    pub connect_matcher: Option<Empty>,
    #[serde(default, deserialize_with = "nullable")]
    pub headers: Vec<HeaderMatcher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    #[serde(default)]
    pub name: String,
    pub string_match: Option<StringMatcher>,
    pub exact_match: Option<String>,
    pub prefix_match: Option<String>,
    pub suffix_match: Option<String>,
    pub contains_match: Option<String>,
    pub safe_regex_match: Option<RegexMatcher>,
    pub present_match: Option<bool>,
    pub invert_match: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatcher {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    pub safe_regex: Option<RegexMatcher>,
    pub ignore_case: Option<bool>,
}

/// `envoy.type.matcher.v3.RegexMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexMatcher {
    /// Deprecated engine selection; accepted and ignored.
    #[allow(dead_code)]
    pub google_re2: Option<GoogleRe2>,
    #[serde(default)]
    pub regex: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleRe2 {
    /// Deprecated; accepted and ignored.
    #[allow(dead_code)]
    pub max_program_size: Option<U32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    pub cluster: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub upgrade_configs: Vec<RouteUpgradeConfig>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite_literal: Option<String>,
    pub timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteUpgradeConfig {
    #[serde(default)]
    pub upgrade_type: String,
    pub enabled: Option<bool>,
    pub connect_config: Option<ConnectConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    pub allow_post: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Clusters

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<DiscoveryType>,
    pub connect_timeout: Option<Dur>,
    pub lb_policy: Option<LbPolicy>,
    pub dns_lookup_family: Option<DnsLookupFamily>,
    pub dns_refresh_rate: Option<Dur>,
    pub original_dst_lb_config: Option<OriginalDstLbConfig>,
    pub load_assignment: Option<ClusterLoadAssignment>,
    pub per_connection_buffer_limit_bytes: Option<U32>,
    pub circuit_breakers: Option<CircuitBreakers>,
    /// Extension name → typed message; only `HttpProtocolOptions` is known.
    pub typed_extension_protocol_options: Option<Map<String, Value>>,
    /// Deprecated cluster-level protocol selection (HTTP/1.1).
    pub http_protocol_options: Option<UpstreamHttp1ProtocolOptions>,
    /// Deprecated cluster-level protocol selection (HTTP/2).
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
    pub max_requests_per_connection: Option<U32>,
    pub common_http_protocol_options: Option<UpstreamCommonHttpProtocolOptions>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscoveryType {
    Static,
    StrictDns,
    LogicalDns,
    OriginalDst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    ClusterProvided,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsLookupFamily {
    Auto,
    V4Only,
    V6Only,
    V4Preferred,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalDstLbConfig {
    pub use_http_header: Option<bool>,
    pub http_header_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLoadAssignment {
    /// Accepted; Envoy does not require it to match the cluster's name for static resources.
    #[allow(dead_code)]
    pub cluster_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<LocalityLbEndpoints>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalityLbEndpoints {
    #[serde(default, deserialize_with = "nullable")]
    pub lb_endpoints: Vec<LbEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbEndpoint {
    pub endpoint: Option<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: Option<Address>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    #[serde(default, deserialize_with = "nullable")]
    pub thresholds: Vec<Thresholds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub priority: Option<RoutingPriority>,
    pub max_connections: Option<U32>,
    pub max_pending_requests: Option<U32>,
    pub max_requests: Option<U32>,
    pub max_retries: Option<U32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RoutingPriority {
    Default,
    High,
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProtocolOptions {
    pub explicit_http_config: Option<ExplicitHttpConfig>,
    /// Not supported yet; read so that the error can say so.
    pub auto_config: Option<Value>,
    /// Not supported yet; read so that the error can say so.
    pub use_downstream_protocol_config: Option<Value>,
    pub common_http_protocol_options: Option<UpstreamCommonHttpProtocolOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitHttpConfig {
    pub http_protocol_options: Option<UpstreamHttp1ProtocolOptions>,
    pub http2_protocol_options: Option<Http2ProtocolOptions>,
    /// Not supported yet; read so that the error can say so.
    pub http3_protocol_options: Option<Value>,
}

/// Upstream HTTP/1.1 options: none are supported yet, so only `{}` is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHttp1ProtocolOptions {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCommonHttpProtocolOptions {
    pub idle_timeout: Option<Dur>,
    pub max_requests_per_connection: Option<U32>,
}
