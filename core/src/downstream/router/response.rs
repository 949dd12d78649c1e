//! The response side of a forwarded request: the pool's word on its connection, the
//! response relayed to the client as it comes, and the switch to a tunnel when an upgrade (or
//! a proxied CONNECT) is accepted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use super::{End, Ended, Response, Stream};
use crate::codec::http1::response::UpEvent;
use crate::codec::http1::{self, BodyKind};
use crate::downstream::client::Downstream;
use crate::downstream::ctx::Ctx;
use crate::downstream::headers::ResponseContext;
use crate::downstream::local_reply;
use crate::io::ConnId;
use crate::shared::ClusterStats;
use crate::transport::Close;
use crate::tunnel::{Ends, Tunnel};
use crate::upstream::pool::{Failure, PoolEvent, Pools, Protocol, Released};

/// What an upgrade's tunnel starts with once the `101` went down: the upstream connection
/// (taken out of the pool), what the client sent before it, and what followed it upstream.
pub(crate) struct Switched {
    pub(crate) up: ConnId,
    /// The upstream end is this request's stream on `up` (an HTTP/2 upstream), not the whole
    /// connection.
    pub(crate) stream: bool,
    pub(crate) cluster: usize,
    held: SmallVec<[Bytes; 1]>,
    first: Bytes,
    down_fin: bool,
    limits: (usize, usize),
    idle: Option<Duration>,
}

impl Switched {
    /// The tunnel between `down` and the upstream connection (named `up` among `io`'s ends),
    /// with what waited already on its way.
    pub(crate) fn into_tunnel<E: Copy + Eq>(
        self,
        now: Instant,
        (down, up): (E, E),
        io: &mut impl Ends<End = E>,
        stats: &ClusterStats,
    ) -> Tunnel<E> {
        let mut tunnel = Tunnel::open(now, (down, up), self.cluster, self.limits, self.idle);
        for data in self.held {
            tunnel.down_data(io, stats, now, data);
        }
        if self.down_fin {
            let _ = tunnel.down_read_closed(io);
        }
        if !self.first.is_empty() {
            // What the upstream sent right after its `101` is the tunnel's first bytes.
            tunnel.up_data(io, stats, now, self.first);
        }
        tunnel.read_down_if_room(io);
        tunnel
    }
}

impl Stream {
    /// The pool's word on this stream, but for response events ([`Self::on_response`]).
    pub(crate) fn on_pool(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        event: PoolEvent,
    ) -> Option<Ended> {
        match event {
            PoolEvent::Bound(up) => self.bound(client, ctx, now, up),
            PoolEvent::Failed(failure) => {
                self.requested = false;
                let body = match failure {
                    Failure::ConnectFailed => local_reply::CONNECT_FAILURE,
                    Failure::ConnectTimeout => local_reply::CONNECT_TIMEOUT,
                };
                self.upstream_failure_reply(ctx, now, 503, body)
            }
            PoolEvent::Response(_) => unreachable!("response events go to on_response"),
            PoolEvent::UpstreamFlushed => {
                let limit = client.buffer_limit();
                if let Some(up) = self.up {
                    if self.up_queued(ctx, up) <= limit / 2 && self.held_len < limit && !self.request_done {
                        client.resume(ctx);
                    }
                }
                None
            }
            PoolEvent::UpstreamGone => {
                self.up = None;
                self.requested = false;
                if matches!(self.response, Response::AwaitingHead) {
                    self.upstream_failure_reply(ctx, now, 503, local_reply::CONNECTION_TERMINATION)
                } else {
                    // The response is cut short: the client must not take it for complete.
                    Ended::cut(Close::FlushThenReset, None)
                }
            }
        }
    }

    /// A piece of the upstream's response.
    pub(crate) fn on_response(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        event: UpEvent,
    ) -> Option<Ended> {
        let limit = client.buffer_limit();
        self.last_activity = now;
        match event {
            UpEvent::Head(head, kind) => self.on_response_head(client, ctx, now, *head, kind),
            UpEvent::Data(data) => {
                if matches!(self.response, Response::AwaitingHead) {
                    return None;
                }
                ctx.shared.clusters[self.key.cluster].upstream_cx_rx_bytes_total.add(data.len() as u64);
                client.send_data(ctx, data);
                if client.backlog(ctx) > limit {
                    self.read_upstream(ctx, now, false);
                }
                None
            }
            UpEvent::End => self.on_response_end(client, ctx, now),
            UpEvent::Refused => {
                // The stream is given back untouched, and the request goes again.
                if let Some(up) = self.up.take() {
                    let id = self.id;
                    let released = ctx
                        .with_pool(self.key.cluster, now, |p: &mut Pools, cx| p.release(up, id, false, cx));
                    if let Released::Rebound { waiter } = released {
                        ctx.defer(waiter, PoolEvent::Bound(up));
                    }
                }
                self.send_again(client, ctx, now)
            }
            UpEvent::Error => {
                ctx.shared.clusters[self.key.cluster].upstream_cx_protocol_error.inc();
                if matches!(self.response, Response::AwaitingHead) {
                    self.upstream_failure_reply(ctx, now, 503, local_reply::PROTOCOL_ERROR)
                } else {
                    Ended::cut(Close::FlushThenReset, self.abandon(ctx, now))
                }
            }
        }
    }

    fn on_response_head(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        head: http1::ResponseHead,
        kind: BodyKind,
    ) -> Option<Ended> {
        let draining = ctx.draining();
        let status = head.status;
        let cluster = self.key.cluster;
        ctx.shared.clusters[cluster].response(status);
        ctx.upstream_status(cluster, status).inc();
        let elapsed = self.sent_at.map_or(0, |at| now.saturating_duration_since(at).as_millis());
        self.upstream_keep_alive =
            head.keep_alive() && !head.headers.contains_token("proxy-connection", "close");
        if !self.upstream_keep_alive {
            ctx.shared.clusters[cluster].upstream_cx_close_notify.inc();
        }
        // A `101`, or a 2xx to a proxied CONNECT: the stream becomes a tunnel.
        // Over HTTP/2 an upgrade is an extended CONNECT, accepted with a 2xx as a CONNECT is.
        let connect = self.method.is_connect() || self.key.protocol == Protocol::Http2;
        let tunnel = status == 101 || connect && (200..300).contains(&status);
        if self.upgrade && tunnel {
            return Some(self.switch_protocols(client, ctx, now, head, elapsed));
        }
        // The route timeout covers the response head; the stream idle timeout the rest.
        self.deadline = None;
        let close = !self.keep_alive || self.down_fin || draining || self.upgrade;
        self.response = if self.upgrade {
            // Envoy U7: the upstream refused the upgrade; what the client sent early is dropped.
            self.held.clear();
            self.held_len = 0;
            Response::Refused
        } else {
            Response::Body
        };
        let config = ctx.config.clone();
        let server_name = client.hcm(&config).server_name.as_str();
        let cx =
            ResponseContext { upgrade_request: self.upgrade, server_name, service_time_ms: elapsed, close };
        client.send_head(ctx, head, kind, &cx);
        None
    }

    /// A `101`: the stream becomes a tunnel over the same upstream connection.
    fn switch_protocols(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
        head: http1::ResponseHead,
        elapsed: u128,
    ) -> Ended {
        let down = client.conn();
        let up = self.up.take().expect("a response comes on a bound connection");
        let cluster = self.key.cluster;
        let stream = self.key.protocol == Protocol::Http2;
        let first = if stream {
            // The tunnel's upstream end is this request's stream; its connection stays pooled.
            Bytes::new()
        } else {
            let first = ctx.with_pool(cluster, now, |pools: &mut Pools, cx| pools.detach(up, cx));
            ctx.adopt_upstream(up, down, cluster);
            first
        };
        let config = ctx.config.clone();
        let server_name = client.hcm(&config).server_name.as_str();
        let cx =
            ResponseContext { upgrade_request: true, server_name, service_time_ms: elapsed, close: false };
        client.switch(ctx, head, &cx);
        let switched = Switched {
            up,
            stream,
            cluster,
            held: std::mem::take(&mut self.held),
            first,
            down_fin: self.down_fin,
            limits: (client.buffer_limit(), ctx.clusters.buffer_limit(cluster)),
            idle: self.idle,
        };
        Ended { end: End::Upgraded(switched), up: None }
    }

    fn on_response_end(
        &mut self,
        client: &mut impl Downstream,
        ctx: &mut Ctx,
        now: Instant,
    ) -> Option<Ended> {
        let up = self.up.take().expect("a response comes on a bound connection");
        let refused = matches!(self.response, Response::Refused);
        client.send_end(ctx);
        ctx.shared.clusters[self.key.cluster].upstream_rq_completed.inc();
        let reusable = self.request_done && self.upstream_keep_alive && !refused;
        // The response may have paused the upstream (a slow client); its next user must find
        // it reading.
        if self.key.protocol == Protocol::Http1 {
            ctx.wire.resume_read(up);
        }
        let id = self.id;
        let released =
            ctx.with_pool(self.key.cluster, now, |pools: &mut Pools, cx| pools.release(up, id, reusable, cx));
        let up = match released {
            Released::Rebound { waiter } => {
                ctx.defer(waiter, PoolEvent::Bound(up));
                None
            }
            Released::Idle => None,
            Released::Close => Some((up, Close::Flush)),
        };
        let close = !self.request_done || !self.keep_alive || self.down_fin || refused || ctx.draining();
        Some(Ended { end: End::Complete { close }, up })
    }
}
