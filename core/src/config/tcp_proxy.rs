//! The TCP proxy network filter and its `tunneling_config`.

use std::collections::HashMap;
use std::time::Duration;

use super::access_log::access_logs;
use super::fields::{at, err, header_value, timeout_or, Result};
use super::model::*;
use super::raw;
use crate::format::Format;

pub const TCP_PROXY_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// Envoy's tcp_proxy idle timeout when none is configured.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn tcp_proxy(
    t: raw::TcpProxy,
    path: &str,
    clusters: &HashMap<String, usize>,
    sinks: &mut Vec<LogSink>,
) -> Result<TcpProxy> {
    if t.stat_prefix.is_empty() {
        return err(at(path, "stat_prefix"), "empty");
    }
    let named = |name: &str, field: &str| match clusters.get(name) {
        Some(&cluster) => Ok(cluster),
        None => err(at(path, field), format!("unknown cluster '{name}'")),
    };
    let clusters = match (t.cluster, t.weighted_clusters) {
        (Some(_), Some(_)) => {
            return err(path, "cluster and weighted_clusters are exclusive: set one");
        }
        (Some(name), None) => vec![ClusterWeight { cluster: named(&name, "cluster")?, weight: 1 }],
        (None, Some(weighted)) => {
            if weighted.clusters.is_empty() {
                return err(at(path, "weighted_clusters.clusters"), "needs at least one cluster");
            }
            let mut out = Vec::with_capacity(weighted.clusters.len());
            for (i, w) in weighted.clusters.into_iter().enumerate() {
                let wpath = format!("weighted_clusters.clusters[{i}]");
                let weight = w.weight.map_or(0, |w| w.0);
                if weight == 0 {
                    return err(at(path, &at(&wpath, "weight")), "must be at least 1");
                }
                out.push(ClusterWeight { cluster: named(&w.name, &at(&wpath, "name"))?, weight });
            }
            out
        }
        (None, None) => return err(path, "needs a cluster (cluster or weighted_clusters)"),
    };
    let max_connect_attempts = t.max_connect_attempts.map_or(1, |n| n.0);
    if max_connect_attempts == 0 {
        return err(at(path, "max_connect_attempts"), "must be at least 1");
    }
    let tunneling = match t.tunneling_config {
        Some(config) => Some(tunneling(config, &at(path, "tunneling_config"))?),
        None => None,
    };
    let access_log = access_logs(t.access_log, &at(path, "access_log"), sinks)?;
    Ok(TcpProxy {
        stat_prefix: t.stat_prefix,
        clusters,
        idle_timeout: timeout_or(t.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT)),
        max_connect_attempts,
        max_downstream_connection_duration: timeout_or(t.max_downstream_connection_duration, None),
        tunneling,
        access_log,
    })
}

fn tunneling(t: raw::TunnelingConfig, path: &str) -> Result<Tunneling> {
    if t.hostname.is_empty() {
        return err(at(path, "hostname"), "empty");
    }
    let hostname = Format::text(&t.hostname).or_else(|e| err(at(path, "hostname"), e))?;
    let use_post = t.use_post.unwrap_or(false);
    let post_path = match t.post_path {
        Some(_) if !use_post => return err(at(path, "post_path"), "needs use_post: true"),
        Some(p) if !p.starts_with('/') => return err(at(path, "post_path"), "must start with '/'"),
        Some(p) => {
            header_value(&p, &at(path, "post_path"))?;
            p
        }
        None => "/".to_string(),
    };
    let mut headers_to_add = Vec::with_capacity(t.headers_to_add.len());
    for (i, option) in t.headers_to_add.into_iter().enumerate() {
        let hpath = format!("{path}.headers_to_add[{i}]");
        let Some(header) = option.header else { return err(hpath, "missing header") };
        let name = header.key.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return err(at(&hpath, "header.key"), "must be a header name");
        }
        if name == "host" {
            // Envoy: headers_to_add cannot override pseudo-headers or `host`.
            return err(at(&hpath, "header.key"), "cannot set host (the hostname field does)");
        }
        header_value(&header.value, &at(&hpath, "header.value"))?;
        let value = Format::text(&header.value).or_else(|e| err(at(&hpath, "header.value"), e))?;
        let action = match (option.append_action, option.append) {
            (Some(_), Some(_)) => return err(hpath, "append and append_action are exclusive"),
            (Some(raw::AppendAction::AppendIfExistsOrAdd), None) | (None, None | Some(true)) => {
                HeaderAction::Append
            }
            (Some(raw::AppendAction::AddIfAbsent), None) => HeaderAction::AddIfAbsent,
            (Some(raw::AppendAction::OverwriteIfExistsOrAdd), None) | (None, Some(false)) => {
                HeaderAction::Overwrite
            }
            (Some(raw::AppendAction::OverwriteIfExists), None) => HeaderAction::OverwriteIfExists,
        };
        let keep_empty = option.keep_empty_value == Some(true);
        headers_to_add.push(HeaderToAdd { name, value, action, keep_empty });
    }
    Ok(Tunneling { hostname, use_post, post_path, headers_to_add })
}

/// RFC 9110 `tchar`; pseudo-headers (`:x`) are not names a tunnel may set.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
