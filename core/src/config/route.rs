//! Route configurations: virtual hosts and their domains, routes with their matches, actions
//! and per-filter switches.

use std::collections::HashMap;
use std::time::Duration;

use super::fields::{
    at, decode, err, header_value, inline_string, not_supported, split_typed, timeout_or, Result,
};
use super::matcher::{header_matcher, regex};
use super::model::*;
use super::raw;

pub const BUFFER_PER_ROUTE_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
/// The generic per-route filter switch of `typed_per_filter_config`.
pub const FILTER_CONFIG_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// Envoy's `RouteConfiguration.max_direct_response_body_size_bytes` default.
const MAX_DIRECT_RESPONSE_BODY: usize = 4096;

pub(super) fn route_config_of(
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
        if u.connect_config.is_some() && !u.upgrade_type.eq_ignore_ascii_case("CONNECT") {
            return not_supported(
                at(&upath, "connect_config"),
                "terminating CONNECT-UDP",
                "burrow terminates CONNECT into TCP only",
            );
        }
        upgrade_configs.push(RouteUpgradeConfig {
            upgrade_type: u.upgrade_type,
            enabled: u.enabled.unwrap_or(true),
            connect_config: u
                .connect_config
                .map(|c| ConnectConfig { allow_post: c.allow_post.unwrap_or(false) }),
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
            let text = inline_string(b, &bpath)?;
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
