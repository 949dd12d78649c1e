//! The HTTP connection manager: its options, its HTTP filter chains and its upgrade types.

use std::collections::HashMap;
use std::time::Duration;

use super::access_log::access_logs;
use super::fields::{at, decode, err, header_value, not_supported, split_typed, timeout_or, Result};
use super::model::*;
use super::raw;
use super::route::route_config_of;

pub const ROUTER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTER_NAME: &str = "envoy.filters.http.router";
pub const BUFFER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";

/// What burrow does instead of the HTTP/3 downstream codec it refuses.
const NO_HTTP3: &str = "burrow serves HTTP/1.1 and HTTP/2 downstream; HTTP/3 listeners come later";

pub(super) fn hcm(
    h: raw::HttpConnectionManager,
    path: &str,
    clusters: &HashMap<String, usize>,
    sinks: &mut Vec<LogSink>,
) -> Result<HttpConnectionManager> {
    if h.stat_prefix.is_empty() {
        return err(at(path, "stat_prefix"), "empty");
    }
    let codec_type = match h.codec_type {
        None | Some(raw::CodecType::Auto) => CodecType::Auto,
        Some(raw::CodecType::Http1) => CodecType::Http1,
        Some(raw::CodecType::Http2) => CodecType::Http2,
        Some(raw::CodecType::Http3) => return not_supported(at(path, "codec_type"), "HTTP3", NO_HTTP3),
    };
    let http2_protocol_options =
        http2_options(h.http2_protocol_options, &at(path, "http2_protocol_options"))?;
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

    let access_log = access_logs(h.access_log, &at(path, "access_log"), sinks)?;
    Ok(HttpConnectionManager {
        stat_prefix: h.stat_prefix,
        codec_type,
        route_config,
        http_filters,
        upgrade_configs,
        http_protocol_options: Http1Options {
            accept_http_10: h.http_protocol_options.and_then(|o| o.accept_http_10).unwrap_or(false),
        },
        http2_protocol_options,
        max_request_headers_kb,
        max_headers_count,
        stream_idle_timeout,
        idle_timeout,
        request_headers_timeout,
        use_remote_address: h.use_remote_address.unwrap_or(false),
        generate_request_id: h.generate_request_id.unwrap_or(true),
        server_name,
        access_log,
    })
}

/// `http2_protocol_options`, with Envoy's ranges checked.
pub(super) fn http2_options(raw: Option<raw::Http2ProtocolOptions>, path: &str) -> Result<Http2Options> {
    let mut options = Http2Options::default();
    let Some(raw) = raw else { return Ok(options) };
    const MAX: u32 = (1 << 31) - 1;
    let ranged = |value: Option<raw::U32>, field: &str, low: u32, default: u32| match value {
        None => Ok(default),
        Some(raw::U32(v)) if (low..=MAX).contains(&v) => Ok(v),
        Some(raw::U32(v)) => err(at(path, field), format!("{v} is out of range ({low}..={MAX})")),
    };
    options.max_concurrent_streams =
        ranged(raw.max_concurrent_streams, "max_concurrent_streams", 1, options.max_concurrent_streams)?;
    options.initial_stream_window_size = ranged(
        raw.initial_stream_window_size,
        "initial_stream_window_size",
        65535,
        options.initial_stream_window_size,
    )?;
    options.initial_connection_window_size = ranged(
        raw.initial_connection_window_size,
        "initial_connection_window_size",
        65535,
        options.initial_connection_window_size,
    )?;
    options.allow_connect = raw.allow_connect.unwrap_or(false);
    if let Some(k) = raw.connection_keepalive {
        let kpath = at(path, "connection_keepalive");
        let Some(timeout) = k.timeout.map(|d| d.0).filter(|d| !d.is_zero()) else {
            return err(at(&kpath, "timeout"), "required, and more than 0s");
        };
        // Without an interval no PING is sent (Envoy then pings only idle connections, which
        // burrow does not do yet).
        options.keepalive =
            k.interval.map(|d| d.0).filter(|d| !d.is_zero()).map(|interval| Keepalive { interval, timeout });
    }
    Ok(options)
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
        let typed_path = at(&fpath, "typed_config");
        let (url, body) = match f.typed_config {
            Some(typed) => split_typed(&typed, &typed_path)?,
            // Envoy's example configs name the router without a typed_config (Envoy 1.40
            // refuses them); the name alone says which filter it is.
            None if f.name == ROUTER_NAME => (ROUTER_TYPE_URL.to_string(), serde_json::json!({})),
            None => {
                return err(
                    fpath,
                    format!("Didn't find a registered implementation for '{}' with type URL: ''", f.name),
                )
            }
        };
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

/// The message name of a type URL, as Envoy quotes it in errors.
fn type_name(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(_, name)| name)
}
