//! A downstream HTTP/1.1 connection of a connection manager: request heads, routing, upgrade
//! negotiation, local replies, and the switch to a CONNECT tunnel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::cluster::Pick;
use crate::config::{Config, HttpConnectionManager, NetworkFilter, RouteAction, RouteTarget};
use crate::http1::{self, BodyKind, HeadError, Limits, Method, RequestHead, Version};
use crate::io::{CloseKind, CloseReason, ConnId};
use crate::local_reply;
use crate::proxy::{Ctx, Event};
use crate::route::{self, RouteRequest};
use crate::shared::HttpStats;
use crate::timers::Timer;
use crate::tunnel::{Closes, Step, Tunnel};

pub(crate) struct HttpConn {
    id: ConnId,
    listener: usize,
    local: SocketAddr,
    limits: Limits,
    buffer_limit: usize,
    /// Bytes of a request head not yet complete.
    head: BytesMut,
    state: State,
    /// This connection is counted in `downstream_cx_upgrades_active`.
    upgraded: bool,
    /// A request is in flight (counted in `downstream_rq_active`).
    in_request: bool,
}

enum State {
    /// Between requests, or reading a request head.
    Head,
    /// A CONNECT waits for its target's name to resolve; early bytes wait with it.
    Resolving { cluster: usize, port: u16, early: Vec<Bytes>, fin: bool, deadline: Instant },
    /// A CONNECT terminated into raw TCP.
    Tunnel(Tunnel),
    /// A final response is queued; the connection closes once it is flushed.
    Closing,
}

impl HttpConn {
    pub(crate) fn new(ctx: &mut Ctx, id: ConnId, listener: usize, local: SocketAddr) -> HttpConn {
        let config = &ctx.config.listeners[listener];
        let hcm = hcm(&ctx.config, listener);
        let stats = &ctx.shared.http[listener];
        stats.downstream_cx_total.inc();
        stats.downstream_cx_active.inc();
        stats.downstream_cx_http1_total.inc();
        stats.downstream_cx_http1_active.inc();
        ctx.shared.listeners[listener].downstream_cx_total.inc();
        ctx.shared.listeners[listener].downstream_cx_active.inc();
        HttpConn {
            id,
            listener,
            local,
            limits: Limits {
                max_head_bytes: hcm.max_request_headers_kb as usize * 1024,
                max_headers: hcm.max_headers_count as usize,
                accept_http_10: hcm.http_protocol_options.accept_http_10,
            },
            buffer_limit: config.per_connection_buffer_limit_bytes as usize,
            head: BytesMut::new(),
            state: State::Head,
            upgraded: false,
            in_request: false,
        }
    }

    /// The upstream connection, if a tunnel has one.
    pub(crate) fn upstream(&self) -> Option<ConnId> {
        match &self.state {
            State::Tunnel(t) => Some(t.upstream),
            _ => None,
        }
    }

    /// An event on the downstream connection itself.
    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: Event) -> Closes {
        match event {
            Event::Data(data) => {
                ctx.shared.http[self.listener].downstream_cx_rx_bytes_total.add(data.len() as u64);
                self.on_data(ctx, now, data)
            }
            Event::ReadClosed => match &mut self.state {
                State::Tunnel(tunnel) => match tunnel.down_read_closed(ctx) {
                    Step::Done => self.end_tunnel(ctx, CloseKind::Flush, false),
                    Step::Continue => Vec::new(),
                },
                State::Resolving { fin, .. } => {
                    *fin = true;
                    Vec::new()
                }
                // A client that half-closes between requests is done with the connection.
                State::Head | State::Closing => self.close(CloseKind::Flush),
            },
            Event::Closed(_) => {
                ctx.shared.http[self.listener].downstream_cx_destroy_remote.inc();
                match &self.state {
                    State::Tunnel(_) => self.end_tunnel(ctx, CloseKind::Abort, false),
                    _ => self.close(CloseKind::Abort),
                }
            }
            Event::Flushed => {
                if let State::Tunnel(tunnel) = &mut self.state {
                    tunnel.flushed(ctx, self.id, self.id);
                }
                Vec::new()
            }
            Event::Resolved(addrs) => self.on_resolved(ctx, now, addrs),
            // Timers are not cancelled: only a deadline that is really due counts.
            Event::ConnectTimeout => match &self.state {
                State::Tunnel(t) if t.connect_expired(now) => {
                    ctx.shared.clusters[t.cluster].upstream_cx_connect_timeout.inc();
                    self.connect_failed(ctx, now, local_reply::CONNECT_TIMEOUT)
                }
                State::Resolving { cluster, deadline, .. } if *deadline <= now => {
                    ctx.shared.clusters[*cluster].upstream_cx_connect_timeout.inc();
                    self.reply(ctx, now, 503, local_reply::CONNECT_TIMEOUT, true)
                }
                _ => Vec::new(),
            },
            Event::Connected | Event::ConnectFailed => Vec::new(),
        }
    }

    /// An event on this connection's upstream (the tunnel's target).
    pub(crate) fn on_upstream(&mut self, ctx: &mut Ctx, now: Instant, event: Event) -> Closes {
        let State::Tunnel(tunnel) = &mut self.state else { return Vec::new() };
        let up = tunnel.upstream;
        match event {
            Event::Connected => {
                let date = ctx.clock.date(now);
                let reply = local_reply::connect_established(&date);
                self.send(ctx, 200, reply);
                let State::Tunnel(tunnel) = &mut self.state else { unreachable!() };
                tunnel.connected(ctx, self.id);
                Vec::new()
            }
            Event::ConnectFailed => self.connect_failed(ctx, now, local_reply::CONNECT_FAILURE),
            Event::Data(data) => {
                let len = tunnel.up_data(ctx, self.id, data);
                ctx.shared.http[self.listener].downstream_cx_tx_bytes_total.add(len);
                Vec::new()
            }
            Event::ReadClosed => match tunnel.up_read_closed(ctx, self.id) {
                Step::Done => self.end_tunnel(ctx, CloseKind::Flush, false),
                Step::Continue => Vec::new(),
            },
            Event::Closed(reason) => {
                debug_assert!(matches!(reason, CloseReason::Reset | CloseReason::WriteError));
                self.end_tunnel(ctx, CloseKind::Flush, true)
            }
            Event::Flushed => {
                tunnel.flushed(ctx, self.id, up);
                Vec::new()
            }
            Event::ConnectTimeout | Event::Resolved(_) => Vec::new(),
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx, now: Instant, data: Bytes) -> Closes {
        match &mut self.state {
            State::Tunnel(tunnel) => {
                tunnel.down_data(ctx, self.id, data);
                Vec::new()
            }
            State::Resolving { early, .. } => {
                early.push(data);
                Vec::new()
            }
            State::Closing => Vec::new(),
            State::Head => {
                self.head.extend_from_slice(&data);
                self.next_request(ctx, now)
            }
        }
    }

    /// Parses and answers requests while whole heads are buffered.
    fn next_request(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        while matches!(self.state, State::Head) && !self.head.is_empty() {
            let (head, consumed) = match http1::parse_request_head(&self.head, &self.limits) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Vec::new(),
                Err(error) => return self.protocol_error(ctx, now, error),
            };
            let head_bytes = self.head.split_to(consumed);
            drop(head_bytes);
            let stats = &ctx.shared.http[self.listener];
            stats.downstream_rq_total.inc();
            stats.downstream_rq_http1_total.inc();
            stats.downstream_rq_active.inc();
            self.in_request = true;
            let body = match http1::request_body(&head) {
                Ok(body) => body,
                Err(error) => return self.protocol_error(ctx, now, error),
            };
            let closes = if head.method == Method::Connect {
                self.on_connect(ctx, now, &head)
            } else {
                self.on_request(ctx, now, &head, body)
            };
            if !closes.is_empty() {
                return closes;
            }
        }
        Vec::new()
    }

    /// A request other than CONNECT. burrow does not proxy these yet: it routes them and
    /// answers what Envoy answers without an upstream (403 for refused upgrades, 404 for no
    /// route, 400 without `host`), and 501 where Envoy would forward upstream.
    fn on_request(&mut self, ctx: &mut Ctx, now: Instant, head: &RequestHead, body: BodyKind) -> Closes {
        let stats = &ctx.shared.http[self.listener];
        let Some(host) = head.headers.get("host").filter(|h| !h.is_empty()) else {
            return self.reply(ctx, now, 400, "missing required header: host", true);
        };
        let keep_alive = body == BodyKind::Empty && wants_keep_alive(head) && !ctx.draining();
        let config = ctx.config.clone();
        let hcm = hcm(&config, self.listener);
        let path = head.target.as_ref();
        let header = |name: &str| head.headers.get(name);
        let request =
            RouteRequest { method: head.method.as_str(), authority: host, path: Some(path), header: &header };
        let route = route::select(&hcm.route_config, &request);
        if let Some(upgrade) = upgrade_token(head) {
            if !upgrade.eq_ignore_ascii_case(b"h2c") {
                let route_upgrades =
                    route.and_then(|r| route_target(&r.action)).map(|t| t.upgrade_configs.as_slice());
                if !upgrade_allowed(hcm, route_upgrades, upgrade) {
                    stats.downstream_rq_ws_on_non_ws_route.inc();
                    return self.reply(ctx, now, 403, "", true);
                }
            }
        }
        match route {
            None => self.reply(ctx, now, 404, "", !keep_alive),
            Some(_) => {
                tracing::warn!("request routed to a cluster: HTTP request proxying is not implemented yet");
                self.reply(
                    ctx,
                    now,
                    501,
                    "burrow: proxying HTTP requests is not implemented yet",
                    !keep_alive,
                )
            }
        }
    }

    fn on_connect(&mut self, ctx: &mut Ctx, now: Instant, head: &RequestHead) -> Closes {
        let config = ctx.config.clone();
        let hcm = hcm(&config, self.listener);
        let authority: &[u8] = head.target.as_ref();
        let header = |name: &str| head.headers.get(name);
        let request = RouteRequest { method: "CONNECT", authority, path: None, header: &header };
        let route = route::select(&hcm.route_config, &request);
        let target = route.and_then(|r| route_target(&r.action));
        if !upgrade_allowed(hcm, target.map(|t| t.upgrade_configs.as_slice()), b"CONNECT") {
            ctx.shared.http[self.listener].downstream_rq_ws_on_non_ws_route.inc();
            return self.reply(ctx, now, 403, "", true);
        }
        let stats = &ctx.shared.http[self.listener];
        stats.downstream_cx_upgrades_total.inc();
        stats.downstream_cx_upgrades_active.inc();
        self.upgraded = true;
        let Some(target) = target else {
            return self.reply(ctx, now, 404, "", true);
        };
        let terminate = target.upgrade_configs.iter().any(|u| {
            u.upgrade_type.eq_ignore_ascii_case("CONNECT") && u.enabled && u.connect_config.is_some()
        });
        if !terminate {
            tracing::warn!("CONNECT proxy mode (no connect_config) is not implemented yet");
            return self.reply(ctx, now, 501, "burrow: CONNECT proxy mode is not implemented yet", true);
        }
        let cluster = target.cluster;
        let original = ctx.clusters.original_dst_header(cluster).map(|name| match name {
            ":authority" | "host" => authority,
            name => head.headers.get(name).unwrap_or_default(),
        });
        // Bytes that came with the head belong to the tunnel.
        let early: Vec<Bytes> =
            if self.head.is_empty() { Vec::new() } else { vec![self.head.split().freeze()] };
        match ctx.clusters.pick(cluster, original, self.local) {
            Pick::Addr(addr) => self.open_tunnel(ctx, now, cluster, addr, early, false),
            Pick::Resolve { host, port } => {
                let query = ctx.clusters.resolve_for(self.id, cluster, host);
                ctx.push(query);
                let deadline = now + ctx.clusters.connect_timeout(cluster);
                ctx.timers.set(deadline, Timer::Connect(self.id));
                self.state = State::Resolving { cluster, port, early, fin: false, deadline };
                Vec::new()
            }
            Pick::NoHost => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.reply(ctx, now, 503, local_reply::NO_HEALTHY_UPSTREAM, true)
            }
        }
    }

    fn on_resolved(&mut self, ctx: &mut Ctx, now: Instant, addrs: Vec<IpAddr>) -> Closes {
        let State::Resolving { cluster, port, early, fin, .. } =
            std::mem::replace(&mut self.state, State::Head)
        else {
            return Vec::new();
        };
        match addrs.first() {
            Some(ip) => self.open_tunnel(ctx, now, cluster, SocketAddr::new(*ip, port), early, fin),
            None => {
                ctx.shared.clusters[cluster].upstream_cx_none_healthy.inc();
                self.reply(ctx, now, 503, local_reply::NO_HEALTHY_UPSTREAM, true)
            }
        }
    }

    fn open_tunnel(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        cluster: usize,
        addr: SocketAddr,
        early: Vec<Bytes>,
        fin: bool,
    ) -> Closes {
        let mut tunnel = Tunnel::connect(ctx, now, self.id, cluster, addr, self.buffer_limit);
        for data in early {
            tunnel.down_data(ctx, self.id, data);
        }
        let step = if fin { tunnel.down_read_closed(ctx) } else { Step::Continue };
        debug_assert!(matches!(step, Step::Continue));
        self.state = State::Tunnel(tunnel);
        Vec::new()
    }

    fn connect_failed(&mut self, ctx: &mut Ctx, now: Instant, body: &str) -> Closes {
        let State::Tunnel(tunnel) = std::mem::replace(&mut self.state, State::Head) else {
            return Vec::new();
        };
        let stats = &ctx.shared.clusters[tunnel.cluster];
        stats.upstream_cx_connect_fail.inc();
        stats.upstream_cx_active.dec();
        stats.upstream_cx_destroy.inc();
        stats.upstream_cx_destroy_local.inc();
        let mut closes = self.reply(ctx, now, 503, body, true);
        closes.push((tunnel.upstream, CloseKind::Abort));
        closes
    }

    /// Both directions of the tunnel are over (or one side failed): close both.
    fn end_tunnel(&mut self, ctx: &mut Ctx, down: CloseKind, upstream_failed: bool) -> Closes {
        let State::Tunnel(tunnel) = std::mem::replace(&mut self.state, State::Closing) else {
            return Vec::new();
        };
        let stats = &ctx.shared.clusters[tunnel.cluster];
        stats.upstream_cx_active.dec();
        stats.upstream_cx_destroy.inc();
        if upstream_failed {
            stats.upstream_cx_destroy_remote.inc();
        } else {
            stats.upstream_cx_destroy_local.inc();
        }
        let up_kind = if upstream_failed { CloseKind::Abort } else { CloseKind::Flush };
        vec![(self.id, down), (tunnel.upstream, up_kind)]
    }

    fn protocol_error(&mut self, ctx: &mut Ctx, now: Instant, error: HeadError) -> Closes {
        tracing::debug!(details = error.details(), "downstream protocol error");
        ctx.shared.http[self.listener].downstream_cx_protocol_error.inc();
        self.head.clear();
        let body = http1::reason_phrase(error.status());
        self.reply(ctx, now, error.status(), body, true)
    }

    /// Sends a local reply; with `close` the connection ends once it is written.
    fn reply(&mut self, ctx: &mut Ctx, now: Instant, status: u16, body: &str, close: bool) -> Closes {
        let date = ctx.clock.date(now);
        let response = local_reply::encode(status, body, &date, close);
        self.send(ctx, status, response);
        self.end_request(ctx);
        if close {
            ctx.shared.http[self.listener].downstream_cx_destroy_local.inc();
            return self.close(CloseKind::Flush);
        }
        Vec::new()
    }

    /// Writes a response head (and body) downstream and counts it.
    fn send(&mut self, ctx: &mut Ctx, status: u16, response: Bytes) {
        let stats = &ctx.shared.http[self.listener];
        stats.response(status);
        stats.downstream_cx_tx_bytes_total.add(response.len() as u64);
        ctx.write(self.id, response);
    }

    fn end_request(&mut self, ctx: &mut Ctx) {
        if std::mem::take(&mut self.in_request) {
            let stats = &ctx.shared.http[self.listener];
            stats.downstream_rq_active.dec();
            stats.downstream_rq_completed.inc();
        }
        if std::mem::take(&mut self.upgraded) {
            ctx.shared.http[self.listener].downstream_cx_upgrades_active.dec();
        }
    }

    fn close(&mut self, kind: CloseKind) -> Closes {
        self.state = State::Closing;
        vec![(self.id, kind)]
    }

    /// The connection is gone: settle its gauges.
    pub(crate) fn finish(mut self: Box<Self>, ctx: &mut Ctx) {
        self.end_request(ctx);
        let stats: &HttpStats = &ctx.shared.http[self.listener];
        stats.downstream_cx_active.dec();
        stats.downstream_cx_http1_active.dec();
        ctx.shared.listeners[self.listener].downstream_cx_active.dec();
        if let State::Tunnel(tunnel) = &self.state {
            let stats = &ctx.shared.clusters[tunnel.cluster];
            stats.upstream_cx_active.dec();
            stats.upstream_cx_destroy.inc();
            stats.upstream_cx_destroy_local.inc();
        }
    }
}

fn hcm(config: &Arc<Config>, listener: usize) -> &HttpConnectionManager {
    match &config.listeners[listener].filter {
        NetworkFilter::HttpConnectionManager(hcm) => hcm,
    }
}

fn route_target(action: &RouteAction) -> Option<&RouteTarget> {
    match action {
        RouteAction::Route(target) => Some(target),
    }
}

/// Envoy's upgrade table: a route entry decides if present (a route may enable a type the
/// connection manager does not list); otherwise the connection manager's entry does.
fn upgrade_allowed(
    hcm: &HttpConnectionManager,
    route: Option<&[crate::config::RouteUpgradeConfig]>,
    upgrade: &[u8],
) -> bool {
    let on_route =
        route.into_iter().flatten().find(|u| u.upgrade_type.as_bytes().eq_ignore_ascii_case(upgrade));
    if let Some(entry) = on_route {
        return entry.enabled;
    }
    hcm.upgrade_configs.iter().any(|u| u.enabled && u.upgrade_type.as_bytes().eq_ignore_ascii_case(upgrade))
}

/// The `Upgrade` token of an HTTP/1.1 upgrade request (`connection: upgrade` + `upgrade: x`).
fn upgrade_token(head: &RequestHead) -> Option<&[u8]> {
    if !head.headers.contains_token("connection", "upgrade") {
        return None;
    }
    head.headers.get("upgrade").filter(|u| !u.is_empty())
}

fn wants_keep_alive(head: &RequestHead) -> bool {
    match head.version {
        Version::Http11 => !head.headers.contains_token("connection", "close"),
        Version::Http10 => head.headers.contains_token("connection", "keep-alive"),
    }
}
