//! What a request gets, decided from its head alone, the same for every protocol it came in:
//! refused, answered by the proxy, forwarded along a route, or (CONNECT) tunnelled to a target.

use std::net::SocketAddr;

use crate::codec::http1::RequestHead;
use crate::config::{HttpConnectionManager, RouteAction, UpstreamProtocol};
use crate::downstream::ctx::Ctx;
use crate::downstream::local_reply;
use crate::downstream::route::{self, RouteIndex, RouteRequest};
use crate::downstream::upgrade::upgrade_allowed;
use crate::upstream::cluster::Pick;

/// Why an HTTP/1.1 client's upgrade or proxied CONNECT to an HTTP/2 cluster is refused.
const NO_H2_UPGRADES: &str =
    "burrow: upgrades and CONNECT from HTTP/1.1 clients to HTTP/2 upstreams are not supported yet";

/// The cluster's upstream protocol is HTTP/1.1 (upgrades and proxied CONNECTs need it so far).
fn speaks_http1(ctx: &Ctx, cluster: usize) -> bool {
    ctx.config.clusters[cluster].protocol == UpstreamProtocol::Http1
}

pub(crate) enum Decision {
    /// 403: the upgrade (or CONNECT) it asks for is not enabled on its route.
    Refused,
    /// The proxy answers itself (no route, a direct response, no host).
    Reply(u16, String),
    Forward(RouteIndex, SocketAddr),
    /// A CONNECT to terminate: a tunnel to the cluster's host (an address, or a name to
    /// resolve first).
    Tunnel {
        cluster: usize,
        pick: Pick,
    },
}

impl Decision {
    /// Whether an upgrade asked for counts in `downstream_cx_upgrades_total`: every one
    /// the table allowed, answered or not, as Envoy counts them.
    pub(crate) fn counts_upgrade(&self) -> bool {
        !matches!(self, Decision::Refused)
    }
}

/// A request other than CONNECT; `upgrade` is the protocol it asks to switch to.
/// `stream_tunnels`: the client's connection can tunnel into an upstream's stream (an HTTP/2
/// client; to an HTTP/2 cluster the upgrade goes as extended CONNECT).
pub(crate) fn request(
    ctx: &mut Ctx,
    hcm: &HttpConnectionManager,
    local: SocketAddr,
    head: &RequestHead,
    upgrade: Option<&[u8]>,
    stream_tunnels: bool,
) -> Decision {
    let index = {
        let host = head.headers.get("host").unwrap_or_default();
        let header = |name: &str| head.headers.get(name);
        let request = RouteRequest {
            method: head.method.as_str(),
            authority: host,
            path: Some(&head.target),
            header: &header,
        };
        route::select_index(&hcm.route_config, &request)
    };
    let route = index.map(|i| i.get(&hcm.route_config));
    if let Some(token) = upgrade {
        let route_upgrades = route.and_then(|r| r.action.target()).map(|t| t.upgrade_configs.as_slice());
        if !upgrade_allowed(hcm, route_upgrades, token) {
            return Decision::Refused;
        }
    }
    let (Some(index), Some(route)) = (index, route) else {
        return Decision::Reply(404, String::new());
    };
    let target = match &route.action {
        RouteAction::DirectResponse { status, body } => {
            return Decision::Reply(*status, body.clone().unwrap_or_default());
        }
        RouteAction::Route(target) => target,
    };
    let cluster = target.cluster;
    if upgrade.is_some() && !stream_tunnels && !speaks_http1(ctx, cluster) {
        return Decision::Reply(501, NO_H2_UPGRADES.to_string());
    }
    let original = ctx.clusters.original_dst_header(cluster).and_then(|name| head.headers.get(name));
    match ctx.clusters.pick(cluster, original, local) {
        Pick::Addr(addr) => Decision::Forward(index, addr),
        // Envoy's original destination takes IP literals only for proxied requests.
        Pick::Resolve { .. } | Pick::NoHost => {
            ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
            Decision::Reply(503, local_reply::NO_HEALTHY_UPSTREAM.to_string())
        }
    }
}

/// A CONNECT to `authority` (routed on it, not on `host`, Envoy C2): terminated into a tunnel
/// of the proxy's own, or forwarded to the route's upstream.
/// `stream_tunnels`: the client's connection can tunnel into an upstream's stream (an HTTP/2
/// client, to an HTTP/2 cluster in proxy mode).
pub(crate) fn connect(
    ctx: &mut Ctx,
    hcm: &HttpConnectionManager,
    local: SocketAddr,
    authority: &[u8],
    head: &RequestHead,
    stream_tunnels: bool,
) -> Decision {
    let header = |name: &str| head.headers.get(name);
    let request = RouteRequest { method: "CONNECT", authority, path: None, header: &header };
    let index = route::select_index(&hcm.route_config, &request);
    let target = index.and_then(|i| i.get(&hcm.route_config).action.target());
    if !upgrade_allowed(hcm, target.map(|t| t.upgrade_configs.as_slice()), b"CONNECT") {
        return Decision::Refused;
    }
    let (Some(index), Some(target)) = (index, target) else {
        return Decision::Reply(404, String::new());
    };
    // With `connect_config` the proxy terminates the CONNECT; without it (proxy mode, Envoy
    // C3) the CONNECT goes on to the route's upstream as a request.
    let terminate = target
        .upgrade_configs
        .iter()
        .any(|u| u.upgrade_type.eq_ignore_ascii_case("CONNECT") && u.enabled && u.connect_config.is_some());
    let cluster = target.cluster;
    let original = ctx.clusters.original_dst_header(cluster).map(|name| match name {
        ":authority" | "host" => authority,
        name => head.headers.get(name).unwrap_or_default(),
    });
    if !terminate && !stream_tunnels && !speaks_http1(ctx, cluster) {
        return Decision::Reply(501, NO_H2_UPGRADES.to_string());
    }
    match ctx.clusters.pick(cluster, original, local) {
        Pick::Addr(addr) if !terminate => Decision::Forward(index, addr),
        pick @ (Pick::Addr(_) | Pick::Resolve { .. }) if terminate => Decision::Tunnel { cluster, pick },
        // No host; or, for a proxied CONNECT, a name to resolve (Envoy's original destination
        // takes IP literals only for proxied requests).
        _ => {
            ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
            Decision::Reply(503, local_reply::NO_HEALTHY_UPSTREAM.to_string())
        }
    }
}
