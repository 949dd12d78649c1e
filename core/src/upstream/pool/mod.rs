//! Upstream connection pools, one per [`PoolKey`] per worker, and the upstream codec of each
//! pooled connection.
//!
//! The pool is exclusive (HTTP/1.1): there is no multiplexing and burrow does not pipeline, so
//! a connection carries one request at a time. A request takes an idle connection if there is
//! one; otherwise it waits as pending while a new connection is opened, within the cluster's
//! circuit breakers. Connections come back after a complete response if they may be reused.
//! Requests are named by [`StreamRef`]s, so a downstream connection may have many.

use std::collections::VecDeque;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::http1::response::{AtEof, ResponseReader, UpEvent};
use crate::codec::http1::Method;
use crate::io::{ConnId, StreamRef};
use crate::shared::ClusterStats;
use crate::transport::{Close, ConnEvent, Transport};
use crate::upstream::breaker::Breakers;

mod mux;

use crate::codec::h2::ClientSettings;
pub(crate) use mux::client_settings;
use mux::MuxConn;

/// The protocol a pool speaks, which decides how many streams a connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    /// One request at a time per connection (the exclusive pool).
    Http1,
    /// Streams multiplexed on each connection (`mux.rs`).
    Http2,
}

/// Which pool: a cluster's connections to one host with one transport and protocol. Requests
/// that differ in any of these never share a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) cluster: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
}

impl PoolKey {
    /// The plain-TCP pool of a host for `protocol`.
    pub(crate) fn plain(cluster: usize, addr: SocketAddr, protocol: Protocol) -> PoolKey {
        PoolKey { cluster, addr, transport: Transport::Plain, protocol }
    }
}

/// Why no connection could be had for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection attempt was refused or failed.
    ConnectFailed,
    /// The connection did not come up within `connect_timeout`.
    ConnectTimeout,
}

/// What the pool tells the stream whose request it serves.
pub(crate) enum PoolEvent {
    /// This connection now carries the request.
    Bound(ConnId),
    /// No connection could be had.
    Failed(Failure),
    /// Response bytes arrived on this bound connection: the stream takes the events with
    /// [`Pools::poll_response`].
    Response(ConnId),
    /// The upstream drained what was written to it.
    UpstreamFlushed,
    /// The connection died under the request.
    UpstreamGone,
}

/// What a pooled connection's event or timer asks of the proxy: events for streams, and
/// whether to close the connection (the pool has already forgotten it then).
#[derive(Default)]
pub(crate) struct PoolOutput {
    pub(crate) events: SmallVec<[(StreamRef, PoolEvent); 1]>,
    pub(crate) close: Option<Close>,
}

/// Outcome of asking for a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Bound to this ready connection now.
    Bound(ConnId),
    /// Waiting; the pool answers with a [`PoolEvent`] later.
    Pending,
    /// A circuit breaker refused it: answer 503 with `x-envoy-overloaded`.
    Overflow,
}

/// What became of a connection handed back after a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// Bound at once to the next pending request of its host.
    Rebound { waiter: StreamRef },
    /// Idle in the pool.
    Idle,
    /// Not reusable: the caller closes it.
    Close,
}

/// What a pool timer meant.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The connect attempt ran out of time; the connection must be closed, and this pending
    /// request (if any) fails with it.
    Connect {
        failed: Option<StreamRef>,
    },
    /// An idle connection reached the idle timeout: close it.
    Idle,
    Nothing,
}

struct PoolConn {
    key: PoolKey,
    state: ConnState,
    /// The upstream codec: reads the response to the request in flight.
    reader: ResponseReader,
    /// Requests this connection has carried.
    requests: u32,
    /// The connect deadline while connecting, the idle deadline while idle.
    deadline: Option<Instant>,
    /// The earliest timer this connection has asked for and not yet seen fire: a connection
    /// parked after every response asks again only when its deadline moves earlier, so the
    /// timer table holds one entry per connection, not one per request.
    armed: Option<Instant>,
}

impl PoolConn {
    fn arm(&mut self, conn: ConnId, io: &mut dyn PoolIo) {
        if let Some(at) = self.deadline {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                io.timer(conn, at);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Idle,
    Bound(StreamRef),
    /// Switched protocols: no longer the pool's to use, though it still holds its
    /// `max_connections` unit until it closes.
    Detached,
}

#[derive(Default)]
struct HostPool {
    /// Most recently used last: reuse the warmest connection.
    idle: Vec<ConnId>,
    pending: VecDeque<StreamRef>,
    connecting: usize,
    /// Connections of this pool, upgraded (detached) ones included.
    conns: usize,
    /// An HTTP/2 pool's connections.
    mux: Vec<ConnId>,
    /// The stream limit the host's peer announced last (HTTP/2).
    peer_limit: Option<usize>,
}

/// Limits a pool applies, from the cluster's config.
#[derive(Clone, Copy)]
pub(crate) struct PoolLimits {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_requests_per_connection: Option<u32>,
    /// HTTP/2: streams per connection at most (the peer may allow fewer).
    pub(crate) max_concurrent_streams: usize,
    /// HTTP/2: the windows offered to the upstream.
    pub(crate) http2: ClientSettings,
    /// `per_connection_buffer_limit_bytes`: what may wait to be written to a connection.
    pub(crate) buffer_limit: usize,
}

/// Everything a pool operation touches besides the pools themselves.
pub(crate) struct PoolCtx<'a> {
    pub(crate) breakers: &'a Breakers,
    pub(crate) stats: &'a ClusterStats,
    pub(crate) limits: PoolLimits,
    pub(crate) now: Instant,
    pub(crate) io: &'a mut dyn PoolIo,
}

impl PoolCtx<'_> {
    /// A request bound to a connection is done with it: its gauge and breaker slot go.
    fn request_done(&self) {
        self.stats.upstream_rq_active.dec();
        self.breakers.requests.release();
    }

    /// A pool connection is gone, closed by the upstream (`remote`) or by the proxy.
    fn connection_gone(&self, remote: bool) {
        self.breakers.connections.release();
        self.stats.upstream_cx_active.dec();
        self.stats.upstream_cx_destroy.inc();
        if remote {
            self.stats.upstream_cx_destroy_remote.inc();
        } else {
            self.stats.upstream_cx_destroy_local.inc();
        }
    }

    /// A connection went with requests on it: counted once per connection, as Envoy does.
    fn destroyed_with_requests(&self, remote: bool) {
        self.stats.upstream_cx_destroy_with_active_rq.inc();
        if remote {
            self.stats.upstream_cx_destroy_remote_with_active_rq.inc();
        } else {
            self.stats.upstream_cx_destroy_local_with_active_rq.inc();
        }
    }

    /// A pending request fails with the connection attempt it waited for.
    fn pending_ejected(&self) {
        self.breakers.pending.release();
        self.breakers.requests.release();
        self.stats.upstream_rq_pending_active.dec();
        self.stats.upstream_rq_pending_failure_eject.inc();
    }
}

/// What a pool asks of the proxy around it.
pub(crate) trait PoolIo {
    /// Opens a connection for the pool `key`, returning its id.
    fn open(&mut self, key: PoolKey) -> ConnId;
    /// Calls the pool back about `conn` at `at` (connect and idle timeouts).
    fn timer(&mut self, conn: ConnId, at: Instant);
    /// Bytes for a pooled connection (an HTTP/2 codec's frames).
    fn write(&mut self, conn: ConnId, data: Bytes);
    /// Bytes written to a connection and not yet taken by it.
    fn queued(&self, conn: ConnId) -> usize;
    /// A pool event for a stream, delivered once the running machine returns.
    fn defer(&mut self, waiter: StreamRef, event: PoolEvent);
    /// The pool is done with a connection it already forgot: close it.
    fn close(&mut self, conn: ConnId, close: Close);
}

#[derive(Default)]
pub(crate) struct Pools {
    hosts: FxHashMap<PoolKey, HostPool>,
    conns: FxHashMap<ConnId, PoolConn>,
    /// HTTP/2 pool connections.
    mux: FxHashMap<ConnId, MuxConn>,
}

impl Pools {
    /// The cluster a pooled connection belongs to.
    pub(crate) fn cluster_of(&self, conn: ConnId) -> Option<usize> {
        match self.conns.get(&conn) {
            Some(c) => Some(c.key.cluster),
            None => self.mux.get(&conn).map(|m| m.key.cluster),
        }
    }

    /// The request bound to a connection, if any.
    fn bound(&self, conn: ConnId) -> Option<StreamRef> {
        match self.conns.get(&conn)?.state {
            ConnState::Bound(waiter) => Some(waiter),
            _ => None,
        }
    }

    /// The next event of `waiter`'s response on `conn`.
    pub(crate) fn poll_response(&mut self, conn: ConnId, waiter: StreamRef) -> Option<UpEvent> {
        if self.is_mux(conn) {
            return self.poll_mux(conn, waiter);
        }
        self.conns.get_mut(&conn)?.reader.poll()
    }

    /// The request bound to `conn` was sent with this method: its response comes next.
    pub(crate) fn expect_response(&mut self, conn: ConnId, method: Method) {
        if let Some(pooled) = self.conns.get_mut(&conn) {
            pooled.reader.expect(method);
        }
    }

    /// An event on a pooled connection: the pool's bookkeeping, the response read by its
    /// codec, and what the request bound to it must hear.
    pub(crate) fn on_event(&mut self, conn: ConnId, event: ConnEvent, cx: &mut PoolCtx<'_>) -> PoolOutput {
        if self.is_mux(conn) {
            return self.on_mux_event(conn, event, cx);
        }
        let mut out = PoolOutput::default();
        let bound = self.bound(conn);
        match event {
            ConnEvent::Connected => {
                if let Some(waiter) = self.connected(conn, cx) {
                    out.events.push((waiter, PoolEvent::Bound(conn)));
                }
            }
            ConnEvent::ConnectFailed => {
                out.close = Some(Close::Abort);
                for waiter in self.closed(conn, true, cx) {
                    out.events.push((waiter, PoolEvent::Failed(Failure::ConnectFailed)));
                }
            }
            ConnEvent::Data(data) => {
                let Some(pooled) = self.conns.get_mut(&conn) else { return out };
                pooled.reader.read(data);
                match bound {
                    Some(waiter) => out.events.push((waiter, PoolEvent::Response(conn))),
                    // Bytes on an idle connection: the upstream is confused; drop it.
                    None => {
                        if matches!(pooled.reader.poll(), Some(UpEvent::Error)) {
                            self.closed(conn, false, cx);
                            out.close = Some(Close::Abort);
                        }
                    }
                }
            }
            ConnEvent::ReadClosed | ConnEvent::Closed => {
                let at_eof = match (&event, self.conns.get_mut(&conn)) {
                    (ConnEvent::ReadClosed, Some(pooled)) => pooled.reader.eof(),
                    _ => AtEof::Cut,
                };
                match bound {
                    // The close ended a read-until-close body: the response completes, and the
                    // connection closes after it.
                    Some(waiter) if at_eof == AtEof::Ended => {
                        out.events.push((waiter, PoolEvent::Response(conn)));
                        out.close = Some(Close::Flush);
                    }
                    Some(waiter) => {
                        self.closed(conn, true, cx);
                        out.close = Some(Close::Abort);
                        out.events.push((waiter, PoolEvent::UpstreamGone));
                    }
                    None => {
                        self.closed(conn, true, cx);
                        out.close = Some(Close::Flush);
                    }
                }
            }
            ConnEvent::Flushed => {
                if let Some(waiter) = bound {
                    out.events.push((waiter, PoolEvent::UpstreamFlushed));
                }
            }
        }
        out
    }

    /// A pool timer fired for `conn`.
    pub(crate) fn on_timer(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> PoolOutput {
        if self.is_mux(conn) {
            return self.mux_timer(conn, cx);
        }
        let mut out = PoolOutput::default();
        match self.expired(conn, cx) {
            Expired::Connect { failed } => {
                out.close = Some(Close::Abort);
                if let Some(waiter) = failed {
                    out.events.push((waiter, PoolEvent::Failed(Failure::ConnectTimeout)));
                }
            }
            Expired::Idle => {
                self.closed(conn, false, cx);
                out.close = Some(Close::Flush);
            }
            Expired::Nothing => {}
        }
        out
    }

    /// A request (named by its stream) wants a connection from the pool `key`.
    pub(crate) fn acquire(&mut self, key: PoolKey, waiter: StreamRef, cx: &mut PoolCtx<'_>) -> Acquired {
        if !cx.breakers.requests.try_acquire() {
            cx.stats.upstream_rq_active_overflow.inc();
            return Acquired::Overflow;
        }
        let bound = match key.protocol {
            Protocol::Http1 => {
                let idle = self.hosts.entry(key).or_default().idle.pop();
                idle.inspect(|&conn| self.bind(conn, waiter, cx))
            }
            Protocol::Http2 => self.bind_with_room(key, waiter, cx),
        };
        if let Some(conn) = bound {
            return Acquired::Bound(conn);
        }
        if !cx.breakers.pending.try_acquire() {
            cx.breakers.requests.release();
            cx.stats.upstream_rq_pending_overflow.inc();
            return Acquired::Overflow;
        }
        self.hosts.entry(key).or_default().pending.push_back(waiter);
        cx.stats.upstream_rq_pending_total.inc();
        cx.stats.upstream_rq_pending_active.inc();
        match key.protocol {
            Protocol::Http1 => self.open_for_pending(key, cx),
            Protocol::Http2 => self.open_for_pending_mux(key, cx),
        }
        Acquired::Pending
    }

    /// Opens connections while pending requests outnumber the connections being opened.
    fn open_for_pending(&mut self, key: PoolKey, cx: &mut PoolCtx<'_>) {
        loop {
            let Some(host) = self.hosts.get_mut(&key) else { return };
            if host.pending.len() <= host.connecting {
                return;
            }
            let Some(conn) = open_connection(host, key, cx) else { return };
            let deadline = cx.now + cx.limits.connect_timeout;
            cx.stats.upstream_cx_http1_total.inc();
            let mut pooled = PoolConn {
                key,
                state: ConnState::Connecting,
                reader: ResponseReader::default(),
                requests: 0,
                deadline: Some(deadline),
                armed: None,
            };
            pooled.arm(conn, cx.io);
            self.conns.insert(conn, pooled);
        }
    }

    fn bind(&mut self, conn: ConnId, waiter: StreamRef, cx: &mut PoolCtx<'_>) {
        let pooled = self.conns.get_mut(&conn).expect("binding an unknown connection");
        debug_assert!(!matches!(pooled.state, ConnState::Bound(_)), "HTTP/1.1 connection bound twice");
        pooled.state = ConnState::Bound(waiter);
        pooled.requests += 1;
        pooled.deadline = None;
        cx.stats.upstream_rq_total.inc();
        cx.stats.upstream_rq_active.inc();
    }

    /// Binds the oldest pending request of the connection's host, if any.
    fn take_pending(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> Option<StreamRef> {
        let key = self.conns.get(&conn)?.key;
        let waiter = self.hosts.get_mut(&key)?.pending.pop_front()?;
        cx.breakers.pending.release();
        cx.stats.upstream_rq_pending_active.dec();
        self.bind(conn, waiter, cx);
        Some(waiter)
    }

    /// The connection is up: it serves the oldest pending request, or waits idle.
    fn connected(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> Option<StreamRef> {
        let pooled = self.conns.get_mut(&conn)?;
        if pooled.state != ConnState::Connecting {
            return None;
        }
        if let Some(host) = self.hosts.get_mut(&pooled.key) {
            host.connecting -= 1;
        }
        pooled.state = ConnState::Idle;
        match self.take_pending(conn, cx) {
            Some(waiter) => Some(waiter),
            None => {
                self.park(conn, cx);
                None
            }
        }
    }

    fn park(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) {
        let pooled = self.conns.get_mut(&conn).expect("parking an unknown connection");
        pooled.state = ConnState::Idle;
        pooled.deadline = cx.limits.idle_timeout.map(|idle| cx.now + idle);
        pooled.arm(conn, cx.io);
        self.hosts.entry(pooled.key).or_default().idle.push(conn);
    }

    /// The response on `conn` is complete and `waiter` is done with it.
    pub(crate) fn release(
        &mut self,
        conn: ConnId,
        waiter: StreamRef,
        reusable: bool,
        cx: &mut PoolCtx<'_>,
    ) -> Released {
        if self.is_mux(conn) {
            return self.release_mux(conn, waiter, false, cx);
        }
        let Some(pooled) = self.conns.get_mut(&conn) else { return Released::Close };
        if !matches!(pooled.state, ConnState::Bound(_)) {
            return Released::Close;
        }
        cx.request_done();
        let exhausted = cx.limits.max_requests_per_connection.is_some_and(|max| pooled.requests >= max);
        if exhausted {
            cx.stats.upstream_cx_max_requests.inc();
        }
        pooled.state = ConnState::Idle;
        if !reusable || exhausted || !pooled.reader.is_idle() {
            return Released::Close;
        }
        match self.take_pending(conn, cx) {
            Some(waiter) => Released::Rebound { waiter },
            None => {
                self.park(conn, cx);
                Released::Idle
            }
        }
    }

    /// A bound request gave up its connection without completing. An HTTP/1.1 connection is
    /// then closed by the caller (nothing more to count than for [`Pools::closed`]); an HTTP/2
    /// stream is reset and the connection goes on: returns whether the caller closes it.
    pub(crate) fn abandon(&mut self, conn: ConnId, waiter: StreamRef, cx: &mut PoolCtx<'_>) -> bool {
        if self.is_mux(conn) {
            if self.release_mux(conn, waiter, true, cx) == Released::Close {
                cx.io.close(conn, Close::Flush);
            }
            return false;
        }
        if let Some(pooled) = self.conns.get_mut(&conn) {
            if matches!(pooled.state, ConnState::Bound(_)) {
                cx.request_done();
                cx.destroyed_with_requests(false);
                pooled.state = ConnState::Idle;
            }
        }
        true
    }

    /// The connection is gone (closed by either side, or failed to connect). Returns the
    /// requests that were bound to it, or — for a failed connect — the pending requests that
    /// attempt was for, which must fail. Then opens a replacement if requests still wait.
    pub(crate) fn closed(
        &mut self,
        conn: ConnId,
        remote: bool,
        cx: &mut PoolCtx<'_>,
    ) -> SmallVec<[StreamRef; 2]> {
        if self.is_mux(conn) {
            return self.closed_mux(conn, remote, cx);
        }
        let Some(pooled) = self.conns.remove(&conn) else { return SmallVec::new() };
        cx.connection_gone(remote);
        let host = self.hosts.entry(pooled.key).or_default();
        host.conns -= 1;
        let failed = match pooled.state {
            ConnState::Connecting => {
                host.connecting -= 1;
                cx.stats.upstream_cx_connect_fail.inc();
                // Fail the requests this attempt was for: those beyond what the attempts still
                // in flight can serve.
                if host.pending.len() > host.connecting {
                    let waiter = host.pending.pop_back();
                    if waiter.is_some() {
                        cx.pending_ejected();
                    }
                    waiter
                } else {
                    None
                }
            }
            ConnState::Idle => {
                host.idle.retain(|&c| c != conn);
                None
            }
            ConnState::Detached => None,
            ConnState::Bound(waiter) => {
                cx.request_done();
                cx.destroyed_with_requests(remote);
                Some(waiter)
            }
        };
        self.open_for_pending(pooled.key, cx);
        self.forget_if_empty(pooled.key);
        self.wake_cluster(pooled.key.cluster, cx);
        failed.into_iter().collect()
    }

    /// A `max_connections` unit came free (a connection left the pool, or a socket that
    /// outlived it finished closing): every pool of the cluster whose requests wait for a
    /// connection to be opened gets its chance.
    pub(crate) fn wake_cluster(&mut self, cluster: usize, cx: &mut PoolCtx<'_>) {
        let waiting: SmallVec<[PoolKey; 4]> = self
            .hosts
            .iter()
            .filter(|(key, host)| key.cluster == cluster && host.pending.len() > host.connecting)
            .map(|(key, _)| *key)
            .collect();
        for key in waiting {
            match key.protocol {
                Protocol::Http1 => self.open_for_pending(key, cx),
                Protocol::Http2 => self.open_for_pending_mux(key, cx),
            }
        }
    }

    /// Drops a host's pool once it holds nothing, so pools for many short-lived hosts
    /// (original destinations) do not pile up.
    fn forget_if_empty(&mut self, key: PoolKey) {
        if self.hosts.get(&key).is_some_and(|h| h.pending.is_empty() && h.conns == 0) {
            self.hosts.remove(&key);
        }
    }

    /// A pending request went away (its downstream closed) before a connection came.
    pub(crate) fn cancel(&mut self, key: PoolKey, waiter: StreamRef, cx: &mut PoolCtx<'_>) {
        let Some(host) = self.hosts.get_mut(&key) else { return };
        let before = host.pending.len();
        host.pending.retain(|&w| w != waiter);
        if host.pending.len() < before {
            cx.breakers.pending.release();
            cx.breakers.requests.release();
            cx.stats.upstream_rq_pending_active.dec();
            cx.stats.upstream_rq_cancelled.inc();
        }
        self.forget_if_empty(key);
    }

    /// The connection switched protocols (a `101`): it serves no other request again, but
    /// still counts as its host's connection and against `max_connections` until it closes
    /// (in Envoy an upgrade is a stream that keeps its connection busy), so a host whose
    /// connections are all upgraded gets no connection past the limit.
    /// Returns what was read after the `101`: the first bytes of the tunnel.
    pub(crate) fn detach(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> Bytes {
        let Some(pooled) = self.conns.get_mut(&conn) else { return Bytes::new() };
        if matches!(pooled.state, ConnState::Bound(_)) {
            cx.request_done();
        }
        pooled.state = ConnState::Detached;
        pooled.reader.take_unread()
    }

    fn expired(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> Expired {
        let Some(pooled) = self.conns.get_mut(&conn) else { return Expired::Nothing };
        pooled.armed = None;
        if pooled.deadline.is_none_or(|at| at > cx.now) {
            // Not due yet (the connection was used since): wait for the current deadline.
            pooled.arm(conn, cx.io);
            return Expired::Nothing;
        }
        match pooled.state {
            ConnState::Connecting => {
                cx.stats.upstream_cx_connect_timeout.inc();
                Expired::Connect { failed: self.closed(conn, false, cx).into_iter().next() }
            }
            ConnState::Idle => {
                cx.stats.upstream_cx_idle_timeout.inc();
                Expired::Idle
            }
            ConnState::Bound(_) | ConnState::Detached => Expired::Nothing,
        }
    }
}

/// Opens a connection for `host` if a `max_connections` unit can be had: a host with no
/// connection at all gets one even past the limit (as Envoy does), so that other hosts holding
/// every connection cannot starve it forever.
fn open_connection(host: &mut HostPool, key: PoolKey, cx: &mut PoolCtx<'_>) -> Option<ConnId> {
    if !cx.breakers.connections.try_acquire() {
        cx.stats.upstream_cx_overflow.inc();
        if host.conns > 0 {
            return None;
        }
        cx.breakers.connections.force_acquire();
    }
    host.connecting += 1;
    host.conns += 1;
    cx.stats.upstream_cx_total.inc();
    cx.stats.upstream_cx_active.inc();
    Some(cx.io.open(key))
}

#[cfg(test)]
mod mux_tests;
#[cfg(test)]
mod tests;
