//! HTTP filter chains: which filters a request runs through, and what they ask of it.
//!
//! burrow's filters are the router (which forwards) and Envoy's buffer filter (which holds a
//! request until its body is complete). A request runs the connection manager's
//! `http_filters`, or, for an upgrade type with `filters` of its own, that chain; a route may
//! switch single filters off or on (`typed_per_filter_config` with `FilterConfig`).

use crate::config::{HttpConnectionManager, HttpFilter, HttpFilterKind, Route};

/// What a request's chain asks of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The buffer filter's `max_request_bytes`, if it is in the chain: the request goes on
    /// only with its whole body (413 past the limit). For an upgrade, whose body is the tunnel
    /// and never ends, this bounds what the client may send before the upgrade completes.
    pub(crate) buffer_limit: Option<usize>,
}

/// The chain for a request with this upgrade token (if any), on this route (if any).
pub(crate) fn plan(hcm: &HttpConnectionManager, upgrade: Option<&[u8]>, route: Option<&Route>) -> Plan {
    let chain = upgrade
        .and_then(|token| {
            hcm.upgrade_configs.iter().find(|u| u.upgrade_type.as_bytes().eq_ignore_ascii_case(token))
        })
        .and_then(|u| u.filters.as_deref())
        .unwrap_or(&hcm.http_filters);
    let active = |f: &&HttpFilter| match route {
        Some(r) if r.disabled_filters.contains(&f.name) => false,
        Some(r) if r.enabled_filters.contains(&f.name) => true,
        _ => !f.disabled,
    };
    let buffer_limit = chain
        .iter()
        .filter(active)
        .filter_map(|f| match f.kind {
            HttpFilterKind::Buffer { max_request_bytes } => Some(max_request_bytes as usize),
            HttpFilterKind::Router => None,
        })
        .min();
    Plan { buffer_limit }
}
