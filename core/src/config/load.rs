//! From Envoy v3 YAML (or JSON) text to the validated [`Config`].
//!
//! Two steps: the YAML text becomes a [`Value`] tree (syntax errors carry line and column), then
//! the tree is decoded into the [`raw`] mirrors through `serde_path_to_error`, and checked and
//! converted here. `typed_config` bodies are decoded on their own once their `@type` is known;
//! their error paths are joined onto the path of the `typed_config` field.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ConfigError;
use super::model::*;
use super::raw;

pub const HCM_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const BUFFER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";
pub const BUFFER_PER_ROUTE_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
/// The generic per-route filter switch of `typed_per_filter_config`.
pub const FILTER_CONFIG_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";
pub const HTTP_PROTOCOL_OPTIONS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The `typed_extension_protocol_options` key for [`HTTP_PROTOCOL_OPTIONS_TYPE_URL`].
pub const HTTP_PROTOCOL_OPTIONS_NAME: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

/// What burrow does instead of the HTTP/2 and HTTP/3 downstream options it refuses.
const DOWNSTREAM_HTTP1_ONLY: &str =
    "burrow's downstream codec is HTTP/1.1 only; codec_type AUTO and HTTP1 both serve HTTP/1.1";
/// What burrow does instead of the HTTP/2 and HTTP/3 upstream options it refuses.
const UPSTREAM_HTTP1_ONLY: &str = "burrow speaks HTTP/1.1 to upstreams only";
const EXPLICIT_HTTP1_ONLY: &str =
    "burrow speaks HTTP/1.1 to upstreams only: use explicit_http_config with http_protocol_options";
const ROUND_ROBIN_ONLY: &str = "burrow balances hosts with ROUND_ROBIN only";

/// Envoy's `RouteConfiguration.max_direct_response_body_size_bytes` default.
const MAX_DIRECT_RESPONSE_BODY: usize = 4096;

type Result<T> = std::result::Result<T, ConfigError>;

impl Config {
    /// Parses and validates an Envoy v3 bootstrap written in YAML (or JSON, a YAML subset).
    pub fn from_yaml(text: &str) -> Result<Config> {
        let value = parse_yaml(text)?;
        if value.is_null() {
            return Err(ConfigError::new("", "the configuration is empty"));
        }
        let bootstrap: raw::Bootstrap = decode(&value, "")?;
        build(bootstrap)
    }
}

fn parse_yaml(text: &str) -> Result<Value> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let message = e
            .to_string()
            .replace("; use from_str_multiple or from_str_multiple_with_options", "")
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigError::new("", format!("invalid YAML: {message}"))
    })
}

/// Decodes `value` as `T`, reporting errors at `base` joined with the path inside `value`.
fn decode<T: DeserializeOwned>(value: &Value, base: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let inner = if inner == "." { "" } else { inner.as_str() };
        ConfigError::new(at(base, inner), e.into_inner().to_string())
    })
}

/// Joins field paths: `at("a.b", "c")` is `a.b.c`, `at("a", "[0]")` is `a[0]`.
fn at(base: &str, rest: &str) -> String {
    if base.is_empty() {
        rest.to_string()
    } else if rest.is_empty() {
        base.to_string()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::new(path, message))
}

/// A field (or value) burrow parses but does not implement yet: refused rather than silently
/// ignored. `what` names the value when the field itself is fine (`"UDP"`), `why` says what
/// burrow does instead.
fn not_supported<T>(path: impl Into<String>, what: &str, why: &str) -> Result<T> {
    let subject = if what.is_empty() { String::new() } else { format!("{what} is ") };
    err(path, format!("{subject}not supported yet ({why})"))
}

/// Splits a `typed_config` into its `@type` and the remaining fields.
fn split_typed(value: &Value, path: &str) -> Result<(String, Value)> {
    let Value::Object(map) = value else {
        return err(path, "expected a map with an \"@type\" field");
    };
    let mut body = map.clone();
    match body.remove("@type") {
        Some(Value::String(url)) => Ok((url, Value::Object(body))),
        Some(_) => err(at(path, "@type"), "expected a string"),
        None => err(path, "missing @type"),
    }
}

/// The message name of a type URL, as Envoy quotes it in errors.
fn type_name(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(_, name)| name)
}

// ---------------------------------------------------------------------------------------------
// Bootstrap, addresses

fn build(bootstrap: raw::Bootstrap) -> Result<Config> {
    if let Some(a) = &bootstrap.admin {
        if a.access_log_path.as_deref().is_some_and(|p| !p.is_empty() && p != "/dev/null") {
            return not_supported(
                "admin.access_log_path",
                "",
                "burrow writes no admin access log; only /dev/null is accepted",
            );
        }
        if a.access_log.as_ref().is_some_and(|logs| !logs.is_empty()) {
            return not_supported("admin.access_log", "", "burrow writes no admin access log");
        }
    }
    let admin = match bootstrap.admin {
        Some(a) => match a.address {
            Some(address) => Some(Admin { address: ip_address(address, "admin.address", false)?.0 }),
            // Envoy starts no admin listener without an address.
            None => None,
        },
        None => None,
    };

    let resources = bootstrap.static_resources.unwrap_or_default();
    let mut clusters = Vec::with_capacity(resources.clusters.len());
    let mut cluster_index = HashMap::new();
    for (i, c) in resources.clusters.into_iter().enumerate() {
        let path = format!("static_resources.clusters[{i}]");
        let c = cluster(c, &path)?;
        if cluster_index.insert(c.name.clone(), i).is_some() {
            return err(at(&path, "name"), format!("duplicate cluster name '{}'", c.name));
        }
        clusters.push(c);
    }

    let mut listeners: Vec<Listener> = Vec::with_capacity(resources.listeners.len());
    for (i, l) in resources.listeners.into_iter().enumerate() {
        let path = format!("static_resources.listeners[{i}]");
        let l = listener(l, &path, &cluster_index)?;
        if listeners.iter().any(|other| other.name == l.name) {
            return err(at(&path, "name"), format!("duplicate listener name '{}'", l.name));
        }
        listeners.push(l);
    }

    Ok(Config { admin, listeners, clusters })
}

enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Reads an `address: {socket_address: {...}}`. `path` names the `address` field.
fn host_address(address: raw::Address, path: &str) -> Result<(Host, u16, SocketProtocol)> {
    let Some(sa) = address.socket_address else {
        return err(path, "missing socket_address (burrow supports only socket addresses)");
    };
    let path = at(path, "socket_address");
    let port = sa.port_value.map_or(0, |p| p.0);
    let Ok(port) = u16::try_from(port) else {
        return err(at(&path, "port_value"), format!("{port} is out of range (0..=65535)"));
    };
    let protocol = match sa.protocol {
        None | Some(raw::Protocol::Tcp) => SocketProtocol::Tcp,
        Some(raw::Protocol::Udp) => SocketProtocol::Udp,
    };
    let host = match sa.address.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) if sa.address.is_empty() => return err(at(&path, "address"), "empty"),
        Err(_) => Host::Name(sa.address),
    };
    Ok((host, port, protocol))
}

/// An address that must be an IP literal; UDP only where `udp_ok`.
fn ip_address(address: raw::Address, path: &str, udp_ok: bool) -> Result<(SocketAddr, SocketProtocol)> {
    let (host, port, protocol) = host_address(address, path)?;
    if protocol == SocketProtocol::Udp && !udp_ok {
        return err(at(path, "socket_address.protocol"), "UDP is not supported here");
    }
    match host {
        Host::Ip(ip) => Ok((SocketAddr::new(ip, port), protocol)),
        Host::Name(name) => {
            err(at(path, "socket_address.address"), format!("'{name}' is not a valid IP address"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners

fn listener(l: raw::Listener, path: &str, clusters: &HashMap<String, usize>) -> Result<Listener> {
    let Some(address) = l.address else {
        return err(path, "missing address");
    };
    let (address, protocol) = ip_address(address, &at(path, "address"), true)?;
    if protocol == SocketProtocol::Udp {
        return not_supported(
            at(path, "address.socket_address.protocol"),
            "UDP",
            "burrow listens on TCP only; HTTP/3 over QUIC is not implemented",
        );
    }
    // Envoy makes up a name for an unnamed listener; the address is a readable stand-in.
    let name = l.name.filter(|n| !n.is_empty()).unwrap_or_else(|| address.to_string());

    let mut chains = l.filter_chains.into_iter();
    let Some(chain) = chains.next() else {
        return err(at(path, "filter_chains"), "a listener needs one filter chain");
    };
    if chains.next().is_some() {
        return err(
            at(path, "filter_chains[1]"),
            "burrow supports one filter chain per listener (filter_chain_match is not supported)",
        );
    }
    let chain_path = at(path, "filter_chains[0]");
    let mut filters = chain.filters.into_iter();
    let Some(filter) = filters.next() else {
        return err(at(&chain_path, "filters"), "a filter chain needs the HTTP connection manager filter");
    };
    if filters.next().is_some() {
        return err(
            at(&chain_path, "filters[1]"),
            "burrow supports exactly one network filter per filter chain (the HTTP connection manager)",
        );
    }
    let filter_path = at(&chain_path, "filters[0]");
    let Some(typed) = filter.typed_config else {
        return err(filter_path, "missing typed_config");
    };
    let typed_path = at(&filter_path, "typed_config");
    let (url, body) = split_typed(&typed, &typed_path)?;
    let filter = match url.as_str() {
        HCM_TYPE_URL => {
            let raw = decode(&body, &typed_path)?;
            NetworkFilter::HttpConnectionManager(Box::new(hcm(raw, &typed_path, clusters)?))
        }
        _ => {
            return err(
                at(&typed_path, "@type"),
                format!(
                "unsupported network filter type '{url}' for filter '{}' (burrow supports {HCM_TYPE_URL})",
                filter.name
            ),
            )
        }
    };
    Ok(Listener {
        name,
        address,
        protocol,
        per_connection_buffer_limit_bytes: l
            .per_connection_buffer_limit_bytes
            .map_or(DEFAULT_BUFFER_LIMIT, |v| v.0),
        filter,
    })
}

fn hcm(
    h: raw::HttpConnectionManager,
    path: &str,
    clusters: &HashMap<String, usize>,
) -> Result<HttpConnectionManager> {
    if h.stat_prefix.is_empty() {
        return err(at(path, "stat_prefix"), "empty");
    }
    let codec_type = match h.codec_type {
        None | Some(raw::CodecType::Auto) => CodecType::Auto,
        Some(raw::CodecType::Http1) => CodecType::Http1,
        Some(raw::CodecType::Http2) => {
            return not_supported(at(path, "codec_type"), "HTTP2", DOWNSTREAM_HTTP1_ONLY);
        }
        Some(raw::CodecType::Http3) => {
            return not_supported(at(path, "codec_type"), "HTTP3", DOWNSTREAM_HTTP1_ONLY);
        }
    };
    if h.http2_protocol_options.is_some() {
        return not_supported(at(path, "http2_protocol_options"), "", DOWNSTREAM_HTTP1_ONLY);
    }
    if h.request_timeout.is_some_and(|d| !d.0.is_zero()) {
        return not_supported(
            at(path, "request_timeout"),
            "",
            "only 0s, disabled, is accepted; request_headers_timeout and stream_idle_timeout are supported",
        );
    }
    let Some(route_config) = h.route_config else {
        return err(path, "missing route_config (rds and scoped_routes are not supported)");
    };
    let route_config = route_config_of(route_config, &at(path, "route_config"), clusters)?;

    let http_filters = http_filter_chain(h.http_filters, &at(path, "http_filters"))?;
    if http_filters.is_empty() {
        return err(
            at(path, "http_filters"),
            "the HTTP filter chain must end with the router (envoy.filters.http.router)",
        );
    }

    let mut upgrade_configs: Vec<UpgradeConfig> = Vec::with_capacity(h.upgrade_configs.len());
    for (i, u) in h.upgrade_configs.into_iter().enumerate() {
        let upath = at(path, &format!("upgrade_configs[{i}].upgrade_type"));
        if u.upgrade_type.is_empty() {
            return err(upath, "empty");
        }
        if upgrade_configs.iter().any(|o| o.upgrade_type.eq_ignore_ascii_case(&u.upgrade_type)) {
            return err(upath, format!("multiple upgrade configs with the same name: '{}'", u.upgrade_type));
        }
        let filters = http_filter_chain(u.filters, &at(path, &format!("upgrade_configs[{i}].filters")))?;
        upgrade_configs.push(UpgradeConfig {
            upgrade_type: u.upgrade_type,
            enabled: u.enabled.unwrap_or(true),
            filters: (!filters.is_empty()).then_some(filters),
        });
    }

    let max_request_headers_kb = h.max_request_headers_kb.map_or(60, |v| v.0);
    if !(1..=8192).contains(&max_request_headers_kb) {
        return err(
            at(path, "max_request_headers_kb"),
            format!("{max_request_headers_kb} is out of range (1..=8192)"),
        );
    }
    let common = h.common_http_protocol_options;
    let max_headers_count = common.as_ref().and_then(|c| c.max_headers_count).map_or(100, |v| v.0);
    if max_headers_count == 0 {
        return err(at(path, "common_http_protocol_options.max_headers_count"), "must be at least 1");
    }
    let stream_idle_timeout = timeout_or(h.stream_idle_timeout, Some(Duration::from_secs(300)));
    let idle_timeout = timeout_or(common.and_then(|c| c.idle_timeout), Some(Duration::from_secs(3600)));
    let request_headers_timeout = timeout_or(h.request_headers_timeout, None);
    let server_name = match h.server_name {
        None => "envoy".to_string(),
        Some(name) if name.is_empty() => "envoy".to_string(),
        Some(name) => {
            header_value(&name, &at(path, "server_name"))?;
            name
        }
    };

    Ok(HttpConnectionManager {
        stat_prefix: h.stat_prefix,
        codec_type,
        route_config,
        http_filters,
        upgrade_configs,
        http_protocol_options: Http1Options {
            accept_http_10: h.http_protocol_options.and_then(|o| o.accept_http_10).unwrap_or(false),
        },
        max_request_headers_kb,
        max_headers_count,
        stream_idle_timeout,
        idle_timeout,
        request_headers_timeout,
        use_remote_address: h.use_remote_address.unwrap_or(false),
        generate_request_id: h.generate_request_id.unwrap_or(true),
        server_name,
    })
}

/// A timeout field where zero disables the timeout and absence means `default`.
fn timeout_or(value: Option<raw::Dur>, default: Option<Duration>) -> Option<Duration> {
    match value {
        None => default,
        Some(d) if d.0.is_zero() => None,
        Some(d) => Some(d.0),
    }
}

/// Envoy's non-strict `HTTP_HEADER_VALUE` rule: no NUL, CR or LF.
fn header_value(value: &str, path: &str) -> Result<()> {
    if value.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return err(path, "must not contain NUL, CR or LF");
    }
    Ok(())
}

/// An HTTP filter chain (`path` names the list). A non-empty chain ends with the router, which
/// appears once and is not disabled; an empty one is returned as is for the caller to judge.
fn http_filter_chain(filters: Vec<raw::HttpFilter>, path: &str) -> Result<Vec<HttpFilter>> {
    let count = filters.len();
    let mut chain = Vec::with_capacity(count);
    for (i, f) in filters.into_iter().enumerate() {
        let fpath = format!("{path}[{i}]");
        if f.name.is_empty() {
            return err(at(&fpath, "name"), "empty");
        }
        let Some(typed) = f.typed_config else {
            return err(
                fpath,
                format!("Didn't find a registered implementation for '{}' with type URL: ''", f.name),
            );
        };
        let typed_path = at(&fpath, "typed_config");
        let (url, body) = split_typed(&typed, &typed_path)?;
        let kind = match url.as_str() {
            ROUTER_TYPE_URL => {
                let _: raw::Router = decode(&body, &typed_path)?;
                HttpFilterKind::Router
            }
            BUFFER_TYPE_URL => {
                let b: raw::Buffer = decode(&body, &typed_path)?;
                match b.max_request_bytes {
                    None => return err(typed_path, "missing max_request_bytes"),
                    Some(raw::U32(0)) => {
                        return err(at(&typed_path, "max_request_bytes"), "must be greater than 0")
                    }
                    Some(raw::U32(max_request_bytes)) => HttpFilterKind::Buffer { max_request_bytes },
                }
            }
            _ => {
                return err(
                    at(&typed_path, "@type"),
                    format!(
                        "Didn't find a registered implementation for '{}' with type URL: '{}'",
                        f.name,
                        type_name(&url)
                    ),
                )
            }
        };
        let disabled = f.disabled.unwrap_or(false);
        if kind == HttpFilterKind::Router {
            if disabled {
                return err(at(&fpath, "disabled"), "the router cannot be disabled");
            }
            if i + 1 != count {
                return err(fpath, "the router must be the last HTTP filter");
            }
        } else if i + 1 == count {
            return err(path, "the HTTP filter chain must end with the router (envoy.filters.http.router)");
        }
        chain.push(HttpFilter { name: f.name, kind, disabled });
    }
    Ok(chain)
}

// ---------------------------------------------------------------------------------------------
// Routes

fn route_config_of(
    rc: raw::RouteConfiguration,
    path: &str,
    clusters: &HashMap<String, usize>,
) -> Result<RouteConfig> {
    let mut virtual_hosts: Vec<VirtualHost> = Vec::with_capacity(rc.virtual_hosts.len());
    // Lower-cased domain → index of the virtual host that has it.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, vh) in rc.virtual_hosts.into_iter().enumerate() {
        let vpath = at(path, &format!("virtual_hosts[{i}]"));
        if vh.name.is_empty() {
            return err(at(&vpath, "name"), "empty");
        }
        if vh.domains.is_empty() {
            return err(at(&vpath, "domains"), "a virtual host needs at least one domain");
        }
        let mut domains = Vec::with_capacity(vh.domains.len());
        for (j, domain) in vh.domains.into_iter().enumerate() {
            let dpath = at(&vpath, &format!("domains[{j}]"));
            let domain = domain.to_ascii_lowercase();
            check_domain(&domain).or_else(|m| err(&dpath, m))?;
            if let Some(&other) = seen.get(&domain) {
                return err(
                    dpath,
                    format!(
                        "Only unique values for domains are permitted. Duplicate entry of domain {domain} \
                         (also in virtual host '{}')",
                        virtual_hosts.get(other).map_or(vh.name.as_str(), |v| v.name.as_str())
                    ),
                );
            }
            seen.insert(domain.clone(), i);
            domains.push(domain);
        }
        let mut routes = Vec::with_capacity(vh.routes.len());
        for (j, r) in vh.routes.into_iter().enumerate() {
            routes.push(route(r, &at(&vpath, &format!("routes[{j}]")), clusters)?);
        }
        virtual_hosts.push(VirtualHost { name: vh.name, domains, routes });
    }
    Ok(RouteConfig { name: rc.name.unwrap_or_default(), virtual_hosts })
}

/// Envoy's domain forms: `*`, `*suffix`, `prefix*`, or no wildcard at all.
fn check_domain(domain: &str) -> std::result::Result<(), String> {
    if domain.is_empty() {
        return Err("empty".into());
    }
    let stars = domain.matches('*').count();
    if stars == 0 || domain == "*" || (stars == 1 && (domain.starts_with('*') || domain.ends_with('*'))) {
        Ok(())
    } else {
        Err(format!("'{domain}': a wildcard must be the whole domain, a leading '*' or a trailing '*'"))
    }
}

fn route(r: raw::Route, path: &str, clusters: &HashMap<String, usize>) -> Result<Route> {
    let Some(m) = r.matcher else {
        return err(path, "missing match");
    };
    let mpath = at(path, "match");
    let mut path_matches = Vec::new();
    if let Some(p) = m.prefix {
        path_matches.push(PathMatch::Prefix(p));
    }
    if let Some(p) = m.path {
        path_matches.push(PathMatch::Path(p));
    }
    if let Some(re) = m.safe_regex {
        path_matches.push(PathMatch::Regex(regex(re, &at(&mpath, "safe_regex"))?));
    }
    if m.connect_matcher.is_some() {
        path_matches.push(PathMatch::Connect);
    }
    if path_matches.len() > 1 {
        return err(mpath, "only one of prefix, path, safe_regex and connect_matcher may be set");
    }
    let Some(path_match) = path_matches.pop() else {
        return err(mpath, "one of prefix, path, safe_regex or connect_matcher is required");
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.into_iter().enumerate() {
        headers.push(header_matcher(h, &at(&mpath, &format!("headers[{i}]")))?);
    }

    if r.redirect.is_some() {
        return err(
            at(path, "redirect"),
            "unsupported: burrow supports the route and direct_response actions",
        );
    }
    let action = match (r.route, r.direct_response) {
        (Some(action), None) => RouteAction::Route(route_target(action, &at(path, "route"), clusters)?),
        (None, Some(d)) => direct_response(d, &at(path, "direct_response"))?,
        (None, None) => return err(path, "one of route or direct_response is required"),
        (Some(_), Some(_)) => return err(path, "only one of route and direct_response may be set"),
    };

    let mut disabled_filters = Vec::new();
    let mut enabled_filters = Vec::new();
    for (name, value) in r.typed_per_filter_config.unwrap_or_default() {
        let fpath = at(path, &format!("typed_per_filter_config[\"{name}\"]"));
        let (url, body) = split_typed(&value, &fpath)?;
        let disabled = match url.as_str() {
            FILTER_CONFIG_TYPE_URL => {
                let fc: raw::FilterConfig = decode(&body, &fpath)?;
                if fc.config.is_some() {
                    return err(
                        at(&fpath, "config"),
                        "unsupported: burrow reads only `disabled` from a FilterConfig",
                    );
                }
                fc.disabled.unwrap_or(false)
            }
            BUFFER_PER_ROUTE_TYPE_URL => {
                let b: raw::BufferPerRoute = decode(&body, &fpath)?;
                match (b.disabled, b.buffer) {
                    (_, Some(_)) => {
                        return err(
                            at(&fpath, "buffer"),
                            "unsupported: a per-route buffer override (only disabled: true is supported)",
                        )
                    }
                    (Some(true), None) => true,
                    (Some(false), None) => return err(at(&fpath, "disabled"), "must be true"),
                    (None, None) => return err(fpath, "one of disabled or buffer is required"),
                }
            }
            _ => {
                let supported = [FILTER_CONFIG_TYPE_URL, BUFFER_PER_ROUTE_TYPE_URL].join(" and ");
                let message =
                    format!("unsupported per-filter config type '{url}' (burrow supports {supported})");
                return err(at(&fpath, "@type"), message);
            }
        };
        if disabled {
            disabled_filters.push(name);
        } else {
            enabled_filters.push(name);
        }
    }

    Ok(Route { matcher: RouteMatch { path: path_match, headers }, action, disabled_filters, enabled_filters })
}

/// A route's `route` action; `path` names it.
fn route_target(
    action: raw::RouteAction,
    apath: &str,
    clusters: &HashMap<String, usize>,
) -> Result<RouteTarget> {
    let Some(cluster_name) = action.cluster else {
        return err(apath, "missing cluster (cluster_header and weighted_clusters are not supported)");
    };
    let Some(&cluster) = clusters.get(&cluster_name) else {
        return err(at(apath, "cluster"), format!("unknown cluster '{cluster_name}'"));
    };
    let mut upgrade_configs: Vec<RouteUpgradeConfig> = Vec::with_capacity(action.upgrade_configs.len());
    for (i, u) in action.upgrade_configs.into_iter().enumerate() {
        let upath = at(apath, &format!("upgrade_configs[{i}]"));
        if u.upgrade_type.is_empty() {
            return err(at(&upath, "upgrade_type"), "empty");
        }
        if upgrade_configs.iter().any(|o| o.upgrade_type.eq_ignore_ascii_case(&u.upgrade_type)) {
            return err(at(&upath, "upgrade_type"), format!("Duplicate upgrade {}", u.upgrade_type));
        }
        let is_connect = u.upgrade_type.eq_ignore_ascii_case("CONNECT")
            || u.upgrade_type.eq_ignore_ascii_case("CONNECT-UDP");
        if u.connect_config.is_some() && !is_connect {
            return err(
                at(&upath, "connect_config"),
                format!("Non-CONNECT upgrade type {} has ConnectConfig", u.upgrade_type),
            );
        }
        if let Some(c) = &u.connect_config {
            if !u.upgrade_type.eq_ignore_ascii_case("CONNECT") {
                return not_supported(
                    at(&upath, "connect_config"),
                    "terminating CONNECT-UDP",
                    "burrow terminates CONNECT into TCP only",
                );
            }
            if c.allow_post == Some(true) {
                return not_supported(
                    at(&upath, "connect_config.allow_post"),
                    "",
                    "burrow terminates CONNECT requests only, not POST",
                );
            }
        }
        upgrade_configs.push(RouteUpgradeConfig {
            upgrade_type: u.upgrade_type,
            enabled: u.enabled.unwrap_or(true),
            connect_config: u.connect_config.map(|_| ConnectConfig {}),
        });
    }

    // Proto3 strings: empty is unset.
    let prefix_rewrite = action.prefix_rewrite.filter(|p| !p.is_empty());
    if let Some(p) = &prefix_rewrite {
        header_value(p, &at(apath, "prefix_rewrite"))?;
    }
    let host_rewrite_literal = action.host_rewrite_literal.filter(|h| !h.is_empty());
    if let Some(h) = &host_rewrite_literal {
        header_value(h, &at(apath, "host_rewrite_literal"))?;
    }

    Ok(RouteTarget {
        cluster,
        upgrade_configs,
        prefix_rewrite,
        host_rewrite_literal,
        timeout: timeout_or(action.timeout, Some(Duration::from_secs(15))),
        idle_timeout: action.idle_timeout.map(|d| timeout_or(Some(d), None)),
    })
}

/// A route's `direct_response` action; `path` names it.
fn direct_response(d: raw::DirectResponseAction, path: &str) -> Result<RouteAction> {
    let status = match d.status {
        None => return err(path, "missing status"),
        Some(raw::U32(s)) if (200..=599).contains(&s) => s as u16,
        Some(raw::U32(s)) => return err(at(path, "status"), format!("{s} is out of range (200..=599)")),
    };
    let body = match d.body {
        None => None,
        Some(b) => {
            let bpath = at(path, "body");
            let unsupported = |field: &str, why: &str| err(at(&bpath, field), format!("unsupported: {why}"));
            if b.filename.is_some() {
                return unsupported("filename", "burrow does not read files here");
            }
            if b.environment_variable.is_some() {
                return unsupported("environment_variable", "burrow does not read the environment here");
            }
            if b.inline_bytes.is_some() {
                return unsupported("inline_bytes", "use inline_string");
            }
            let Some(text) = b.inline_string else {
                return err(bpath, "missing inline_string");
            };
            if text.len() > MAX_DIRECT_RESPONSE_BODY {
                return err(
                    at(&bpath, "inline_string"),
                    format!(
                        "response body size is {} bytes; maximum is {MAX_DIRECT_RESPONSE_BODY}",
                        text.len()
                    ),
                );
            }
            Some(text)
        }
    };
    Ok(RouteAction::DirectResponse { status, body })
}

/// Compiles a `RegexMatcher` (`path` names it) so that it matches whole inputs only.
fn regex(m: raw::RegexMatcher, path: &str) -> Result<Regex> {
    let rpath = at(path, "regex");
    if m.regex.is_empty() {
        return err(rpath, "empty");
    }
    // Checked alone first: an unbalanced source could otherwise escape the anchoring group.
    if let Err(e) = regex::Regex::new(&m.regex) {
        return err(rpath, format!("invalid regex: {e}"));
    }
    let compiled = regex::Regex::new(&format!(r"\A(?:{})\z", m.regex))
        .or_else(|e| err(&rpath, format!("invalid regex: {e}")))?;
    Ok(Regex { source: m.regex, compiled })
}

fn header_matcher(h: raw::HeaderMatcher, path: &str) -> Result<HeaderMatcher> {
    if h.name.is_empty() {
        return err(at(path, "name"), "empty");
    }
    let mut rules = Vec::new();
    if let Some(s) = h.string_match {
        rules.push(string_matcher(s, &at(path, "string_match"))?);
    }
    // The deprecated forms, case-sensitive.
    let ignore_case = false;
    if let Some(value) = h.exact_match {
        rules.push(HeaderRule::Exact { value, ignore_case });
    }
    if let Some(value) = h.prefix_match {
        rules.push(HeaderRule::Prefix { value, ignore_case });
    }
    if let Some(value) = h.suffix_match {
        rules.push(HeaderRule::Suffix { value, ignore_case });
    }
    if let Some(value) = h.contains_match {
        rules.push(HeaderRule::Contains { value, ignore_case });
    }
    if let Some(re) = h.safe_regex_match {
        rules.push(HeaderRule::Regex(regex(re, &at(path, "safe_regex_match"))?));
    }
    if let Some(p) = h.present_match {
        rules.push(HeaderRule::Present(p));
    }
    if rules.len() > 1 {
        return err(path, "only one of string_match, exact_match, prefix_match, suffix_match, contains_match, safe_regex_match and present_match may be set");
    }
    // With no rule, Envoy matches on the header's presence.
    let rule = rules.pop().unwrap_or(HeaderRule::Present(true));
    Ok(HeaderMatcher { name: h.name.to_ascii_lowercase(), rule, invert: h.invert_match.unwrap_or(false) })
}

fn string_matcher(s: raw::StringMatcher, path: &str) -> Result<HeaderRule> {
    let ignore_case = s.ignore_case.unwrap_or(false);
    let nonempty = |field: &str, value: String| {
        if value.is_empty() {
            err(at(path, field), "empty")
        } else {
            Ok(value)
        }
    };
    let mut rules = Vec::new();
    if let Some(value) = s.exact {
        rules.push(HeaderRule::Exact { value, ignore_case });
    }
    if let Some(v) = s.prefix {
        rules.push(HeaderRule::Prefix { value: nonempty("prefix", v)?, ignore_case });
    }
    if let Some(v) = s.suffix {
        rules.push(HeaderRule::Suffix { value: nonempty("suffix", v)?, ignore_case });
    }
    if let Some(v) = s.contains {
        rules.push(HeaderRule::Contains { value: nonempty("contains", v)?, ignore_case });
    }
    if let Some(re) = s.safe_regex {
        // `ignore_case` has no effect on safe_regex, as in Envoy.
        rules.push(HeaderRule::Regex(regex(re, &at(path, "safe_regex"))?));
    }
    if rules.len() > 1 {
        return err(path, "only one of exact, prefix, suffix, contains and safe_regex may be set");
    }
    rules
        .pop()
        .map_or_else(|| err(path, "one of exact, prefix, suffix, contains or safe_regex is required"), Ok)
}

// ---------------------------------------------------------------------------------------------
// Clusters

fn cluster(c: raw::Cluster, path: &str) -> Result<Cluster> {
    use raw::DiscoveryType as D;

    if c.name.is_empty() {
        return err(at(path, "name"), "empty");
    }
    let kind = c.kind.unwrap_or(D::Static);
    let kind_name = match kind {
        D::Static => "STATIC",
        D::StrictDns => "STRICT_DNS",
        D::LogicalDns => "LOGICAL_DNS",
        D::OriginalDst => "ORIGINAL_DST",
    };

    let connect_timeout = c.connect_timeout.map_or(Duration::from_secs(5), |d| d.0);
    if connect_timeout.is_zero() {
        return err(at(path, "connect_timeout"), "must be greater than 0s");
    }

    let lb_policy = match c.lb_policy.unwrap_or(raw::LbPolicy::RoundRobin) {
        raw::LbPolicy::RoundRobin => LbPolicy::RoundRobin,
        raw::LbPolicy::ClusterProvided => LbPolicy::ClusterProvided,
        raw::LbPolicy::LeastRequest => {
            return not_supported(at(path, "lb_policy"), "LEAST_REQUEST", ROUND_ROBIN_ONLY);
        }
        raw::LbPolicy::Random => return not_supported(at(path, "lb_policy"), "RANDOM", ROUND_ROBIN_ONLY),
    };
    match (kind, lb_policy) {
        (D::OriginalDst, LbPolicy::ClusterProvided) => {}
        (D::OriginalDst, _) => {
            return err(
                at(path, "lb_policy"),
                "only CLUSTER_PROVIDED is allowed with cluster type ORIGINAL_DST",
            )
        }
        (_, LbPolicy::ClusterProvided) => {
            return err(
                at(path, "lb_policy"),
                format!("CLUSTER_PROVIDED is not valid for cluster type {kind_name} (only for ORIGINAL_DST)"),
            )
        }
        _ => {}
    }

    let dns_lookup_family = match c.dns_lookup_family {
        None | Some(raw::DnsLookupFamily::Auto) => Family::Auto,
        Some(raw::DnsLookupFamily::V4Only) => Family::V4Only,
        Some(raw::DnsLookupFamily::V6Only) => Family::V6Only,
        Some(raw::DnsLookupFamily::V4Preferred) => Family::V4Preferred,
        Some(raw::DnsLookupFamily::All) => Family::All,
    };
    let dns_refresh_rate = c.dns_refresh_rate.map_or(Duration::from_secs(5), |d| d.0);
    if dns_refresh_rate <= Duration::from_millis(1) {
        return err(at(path, "dns_refresh_rate"), "must be greater than 1ms");
    }

    let discovery = match kind {
        D::Static => Discovery::Static,
        D::StrictDns => Discovery::StrictDns,
        D::LogicalDns => Discovery::LogicalDns,
        D::OriginalDst => {
            let o = c.original_dst_lb_config.as_ref();
            Discovery::OriginalDst {
                use_http_header: o.and_then(|o| o.use_http_header).unwrap_or(false),
                http_header_name: o
                    .and_then(|o| o.http_header_name.as_deref())
                    .filter(|n| !n.is_empty())
                    .map(str::to_ascii_lowercase),
            }
        }
    };
    if c.original_dst_lb_config.is_some() && kind != D::OriginalDst {
        return err(
            at(path, "original_dst_lb_config"),
            format!("only valid with cluster type ORIGINAL_DST, not {kind_name}"),
        );
    }

    let mut endpoints = Vec::new();
    if let Some(la) = c.load_assignment {
        let la_path = at(path, "load_assignment");
        for (i, locality) in la.endpoints.into_iter().enumerate() {
            for (j, lb) in locality.lb_endpoints.into_iter().enumerate() {
                let lb_path = at(&la_path, &format!("endpoints[{i}].lb_endpoints[{j}]"));
                let Some(endpoint) = lb.endpoint else {
                    return err(lb_path, "missing endpoint");
                };
                let Some(address) = endpoint.address else {
                    return err(at(&lb_path, "endpoint"), "missing address");
                };
                let apath = at(&lb_path, "endpoint.address");
                let (host, port, protocol) = host_address(address, &apath)?;
                if protocol == SocketProtocol::Udp {
                    return err(at(&apath, "socket_address.protocol"), "UDP is not supported here");
                }
                endpoints.push(match host {
                    Host::Ip(ip) => Endpoint::Ip(SocketAddr::new(ip, port)),
                    Host::Name(host) if matches!(kind, D::StrictDns | D::LogicalDns) => {
                        if !valid_hostname(&host) {
                            return err(
                                at(&apath, "socket_address.address"),
                                format!("'{host}' is not a valid host name"),
                            );
                        }
                        Endpoint::Dns { host: host.to_ascii_lowercase(), port }
                    }
                    Host::Name(host) => {
                        return err(
                            at(&apath, "socket_address.address"),
                            format!(
                                "'{host}' is not a valid IP address (host names need type STRICT_DNS or LOGICAL_DNS)"
                            ),
                        )
                    }
                });
            }
        }
    }
    match kind {
        D::OriginalDst if !endpoints.is_empty() => {
            return err(
                at(path, "load_assignment"),
                "ORIGINAL_DST clusters must have no load assignment configured",
            )
        }
        D::LogicalDns if endpoints.len() != 1 => {
            return err(
                at(path, "load_assignment"),
                "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
            )
        }
        D::Static | D::StrictDns if endpoints.is_empty() => {
            return err(
                at(path, "load_assignment"),
                format!("a {kind_name} cluster needs at least one endpoint"),
            )
        }
        _ => {}
    }

    let mut circuit_breakers = Thresholds::default();
    if let Some(cb) = c.circuit_breakers {
        for t in cb.thresholds {
            if t.priority == Some(raw::RoutingPriority::High) {
                continue; // Burrow has no high-priority routing; accepted and ignored.
            }
            let set = |field: &mut u32, v: Option<raw::U32>| {
                if let Some(v) = v {
                    *field = v.0;
                }
            };
            set(&mut circuit_breakers.max_connections, t.max_connections);
            set(&mut circuit_breakers.max_pending_requests, t.max_pending_requests);
            set(&mut circuit_breakers.max_requests, t.max_requests);
            set(&mut circuit_breakers.max_retries, t.max_retries);
        }
    }

    // Upstream protocol options: the typed HttpProtocolOptions, or the deprecated cluster-level
    // fields. HTTP/1.1 is the only upstream protocol so far.
    let mut common = None;
    let mut common_path = at(path, "common_http_protocol_options");
    let typed = c.typed_extension_protocol_options.unwrap_or_default();
    for (key, value) in &typed {
        let kpath = at(path, &format!("typed_extension_protocol_options[\"{key}\"]"));
        if key != HTTP_PROTOCOL_OPTIONS_NAME {
            return err(
                kpath,
                format!("unsupported extension '{key}' (burrow supports {HTTP_PROTOCOL_OPTIONS_NAME})"),
            );
        }
        let (url, body) = split_typed(value, &kpath)?;
        if url != HTTP_PROTOCOL_OPTIONS_TYPE_URL {
            return err(
                at(&kpath, "@type"),
                format!("unsupported type '{url}' (expected {HTTP_PROTOCOL_OPTIONS_TYPE_URL})"),
            );
        }
        let hpo: raw::HttpProtocolOptions = decode(&body, &kpath)?;
        if hpo.auto_config.is_some() {
            return not_supported(at(&kpath, "auto_config"), "", EXPLICIT_HTTP1_ONLY);
        }
        if hpo.use_downstream_protocol_config.is_some() {
            return not_supported(at(&kpath, "use_downstream_protocol_config"), "", EXPLICIT_HTTP1_ONLY);
        }
        let Some(explicit) = hpo.explicit_http_config else {
            return err(kpath, format!("missing explicit_http_config ({EXPLICIT_HTTP1_ONLY})"));
        };
        let epath = at(&kpath, "explicit_http_config");
        if explicit.http2_protocol_options.is_some() {
            return not_supported(at(&epath, "http2_protocol_options"), "", UPSTREAM_HTTP1_ONLY);
        }
        if explicit.http3_protocol_options.is_some() {
            return not_supported(at(&epath, "http3_protocol_options"), "", UPSTREAM_HTTP1_ONLY);
        }
        if explicit.http_protocol_options.is_none() {
            return err(epath, "missing http_protocol_options");
        }
        if hpo.common_http_protocol_options.is_some() {
            common = hpo.common_http_protocol_options;
            common_path = at(&kpath, "common_http_protocol_options");
        }
    }
    let has_typed = !typed.is_empty();
    let legacy_conflict = |field: &str| {
        err(
            at(path, field),
            format!(
                "cannot be combined with typed_extension_protocol_options[\"{HTTP_PROTOCOL_OPTIONS_NAME}\"]"
            ),
        )
    };
    if c.http2_protocol_options.is_some() {
        return not_supported(at(path, "http2_protocol_options"), "", UPSTREAM_HTTP1_ONLY);
    }
    if c.http_protocol_options.is_some() && has_typed {
        return legacy_conflict("http_protocol_options");
    }
    if c.common_http_protocol_options.is_some() {
        if common.is_some() {
            return legacy_conflict("common_http_protocol_options");
        }
        common = c.common_http_protocol_options;
    }
    let mut max_requests_per_connection =
        common.as_ref().and_then(|c| c.max_requests_per_connection).map(|v| v.0);
    if let Some(v) = c.max_requests_per_connection {
        if max_requests_per_connection.is_some() {
            return err(
                at(path, "max_requests_per_connection"),
                format!("cannot be combined with {common_path}.max_requests_per_connection"),
            );
        }
        max_requests_per_connection = Some(v.0);
    }
    // Zero means no limit, as when unset.
    let max_requests_per_connection = max_requests_per_connection.filter(|&v| v != 0);
    // Envoy's upstream idle timeout defaults to one hour; zero disables it.
    let idle_timeout = match common.and_then(|c| c.idle_timeout) {
        None => Some(Duration::from_secs(3600)),
        Some(d) if d.0.is_zero() => None,
        Some(d) => Some(d.0),
    };

    Ok(Cluster {
        name: c.name,
        discovery,
        connect_timeout,
        lb_policy,
        dns_lookup_family,
        dns_refresh_rate,
        endpoints,
        per_connection_buffer_limit_bytes: c
            .per_connection_buffer_limit_bytes
            .map_or(DEFAULT_BUFFER_LIMIT, |v| v.0),
        protocol: UpstreamProtocol::Http1,
        max_requests_per_connection,
        idle_timeout,
        circuit_breakers,
    })
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, with an optional final dot.
fn valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
