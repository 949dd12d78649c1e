//! Envoy's upgrade negotiation: which protocol an HTTP/1.1 request asks to switch to, and
//! whether the upgrade table lets it.

use crate::codec::http1::RequestHead;
use crate::config::{HttpConnectionManager, RouteUpgradeConfig};

/// The `Upgrade` token of an HTTP/1.1 upgrade request (`connection: upgrade` + `upgrade: x`).
pub(crate) fn upgrade_token(head: &RequestHead) -> Option<&[u8]> {
    if !head.headers.contains_token("connection", "upgrade") {
        return None;
    }
    head.headers.get("upgrade").filter(|u| !u.is_empty())
}

/// Envoy's upgrade table: a route entry decides if present (a route may enable a type the
/// connection manager does not list); otherwise the connection manager's entry does.
pub(crate) fn upgrade_allowed(
    hcm: &HttpConnectionManager,
    route: Option<&[RouteUpgradeConfig]>,
    upgrade: &[u8],
) -> bool {
    let on_route =
        route.into_iter().flatten().find(|u| u.upgrade_type.as_bytes().eq_ignore_ascii_case(upgrade));
    if let Some(entry) = on_route {
        return entry.enabled;
    }
    hcm.upgrade_configs.iter().any(|u| u.enabled && u.upgrade_type.as_bytes().eq_ignore_ascii_case(upgrade))
}
