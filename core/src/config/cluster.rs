//! Clusters: discovery type, balancing, endpoints, circuit breakers and upstream protocol
//! options.

use std::net::SocketAddr;
use std::time::Duration;

use super::address::{host_address, Host};
use super::fields::{at, decode, err, not_supported, split_typed, Result, DEFAULT_BUFFER_LIMIT};
use super::hcm::http2_options;
use super::model::*;
use super::raw;

pub const HTTP_PROTOCOL_OPTIONS_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The `typed_extension_protocol_options` key for [`HTTP_PROTOCOL_OPTIONS_TYPE_URL`].
pub const HTTP_PROTOCOL_OPTIONS_NAME: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// What burrow does instead of the upstream protocol options it refuses.
const NO_HTTP3: &str = "burrow speaks HTTP/1.1 and HTTP/2 to upstreams; HTTP/3 comes later";
const EXPLICIT_ONLY: &str = "burrow needs the upstream protocol chosen: use explicit_http_config with \
     http_protocol_options or http2_protocol_options (ALPN selection comes with TLS)";
const ROUND_ROBIN_ONLY: &str = "burrow balances hosts with ROUND_ROBIN only";

pub(super) fn cluster(c: raw::Cluster, path: &str) -> Result<Cluster> {
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
    // fields.
    let mut protocol = UpstreamProtocol::Http1;
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
            return not_supported(at(&kpath, "auto_config"), "", EXPLICIT_ONLY);
        }
        if hpo.use_downstream_protocol_config.is_some() {
            return not_supported(at(&kpath, "use_downstream_protocol_config"), "", EXPLICIT_ONLY);
        }
        let Some(explicit) = hpo.explicit_http_config else {
            return err(kpath, format!("missing explicit_http_config ({EXPLICIT_ONLY})"));
        };
        let epath = at(&kpath, "explicit_http_config");
        if explicit.http3_protocol_options.is_some() {
            return not_supported(at(&epath, "http3_protocol_options"), "", NO_HTTP3);
        }
        match (explicit.http_protocol_options, explicit.http2_protocol_options) {
            (Some(_), None) => {}
            (None, Some(h2)) => {
                protocol =
                    UpstreamProtocol::Http2(http2_options(Some(h2), &at(&epath, "http2_protocol_options"))?);
            }
            (None, None) => return err(epath, "missing http_protocol_options or http2_protocol_options"),
            (Some(_), Some(_)) => {
                return err(
                    epath,
                    "http_protocol_options and http2_protocol_options are alternatives (one of)",
                );
            }
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
    if let Some(h2) = c.http2_protocol_options {
        if has_typed {
            return legacy_conflict("http2_protocol_options");
        }
        if c.http_protocol_options.is_some() {
            return err(at(path, "http2_protocol_options"), "cannot be combined with http_protocol_options");
        }
        protocol = UpstreamProtocol::Http2(http2_options(Some(h2), &at(path, "http2_protocol_options"))?);
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
        protocol,
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
