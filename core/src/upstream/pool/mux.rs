//! The multiplexed pool (HTTP/2): a connection carries as many streams at once as the smaller
//! of the configured `max_concurrent_streams` and the peer's SETTINGS allow, and no stream is
//! opened on a connection before the peer's SETTINGS were read, so the limit is never guessed
//! (better than Envoy, P5). A request binds to a connection with room; pending requests open
//! new connections, as many as the host's known limit says they need, within the breakers.
//! `max_requests_per_connection` and a GOAWAY drain a connection: it takes no new stream and
//! closes when its last one ends. Each connection's h2 codec sorts the response events by
//! stream; the stream bound to it pulls them as with HTTP/1.1.

use std::collections::VecDeque;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::{open_connection, Failure, PoolCtx, PoolEvent, PoolKey, PoolOutput, Pools, Released};
use crate::codec::h2::{ClientCodec, ClientEvent, ClientPolled, ClientSettings};
use crate::codec::http1::response::UpEvent;
use crate::codec::http1::{BodyKind, Headers, ResponseHead, Version};
use crate::config::Http2Options;
use crate::io::{ConnId, StreamRef};
use crate::transport::{Close, ConnEvent};

/// The streams a client may open on one connection (odd ids below 2^31).
const MAX_STREAMS_PER_CONNECTION: u32 = (1 << 30) - 1;

pub(super) struct MuxConn {
    pub(super) key: PoolKey,
    state: MuxState,
    codec: Box<ClientCodec>,
    /// The configured stream limit (the peer's may be lower).
    limit: usize,
    /// Requests bound and waiting to open their stream.
    reserved: SmallVec<[StreamRef; 2]>,
    /// Open streams by codec key.
    streams: FxHashMap<usize, MuxStream>,
    /// Streams this connection has carried (for `max_requests_per_connection`).
    requests: u32,
    deadline: Option<std::time::Instant>,
    armed: Option<std::time::Instant>,
}

struct MuxStream {
    waiter: StreamRef,
    /// Response events not yet taken by the stream.
    events: VecDeque<UpEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MuxState {
    Connecting,
    Open,
    /// No new streams (GOAWAY, or `max_requests_per_connection` reached); closes when empty.
    Draining,
    /// Closed, and forgotten by its host; kept only for the streams whose whole responses
    /// (or refusals) wait to be taken.
    Gone,
}

impl MuxConn {
    fn active(&self) -> usize {
        self.reserved.len() + self.streams.len()
    }

    /// A request may bind to this connection now.
    fn has_room(&mut self, max_requests: Option<u32>) -> bool {
        self.state == MuxState::Open
            && max_requests.is_none_or(|max| self.requests < max)
            && self.active() < self.limit.min(self.codec.peer_limit())
            && self.codec.can_open()
    }

    fn stream_of(&self, waiter: StreamRef) -> Option<usize> {
        self.streams.iter().find(|(_, s)| s.waiter == waiter).map(|(k, _)| *k)
    }
}

/// The response head an HTTP/2 response stands for, as the router relays it.
fn response_head(parts: http::response::Parts, end: bool) -> (ResponseHead, BodyKind) {
    let mut headers = Headers::new();
    for (name, value) in &parts.headers {
        headers.append(name.as_str(), value.as_bytes());
    }
    let length = headers.get("content-length").and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
    let kind = match length {
        _ if end => BodyKind::Empty,
        Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
        None => BodyKind::Chunked,
    };
    let head = ResponseHead {
        version: Version::Http11,
        status: parts.status.as_u16(),
        reason: Bytes::new(),
        headers,
    };
    (head, kind)
}

/// What the peer offers this cluster's connections, from its options.
pub(crate) fn client_settings(options: &Http2Options) -> ClientSettings {
    ClientSettings {
        initial_stream_window_size: options.initial_stream_window_size,
        initial_connection_window_size: options.initial_connection_window_size,
    }
}

impl Pools {
    pub(super) fn is_mux(&self, conn: ConnId) -> bool {
        self.mux.contains_key(&conn)
    }

    /// Binds `waiter` to a connection of the HTTP/2 pool `key` with room for a stream, if any.
    pub(super) fn bind_with_room(
        &mut self,
        key: PoolKey,
        waiter: StreamRef,
        cx: &mut PoolCtx<'_>,
    ) -> Option<ConnId> {
        let max_requests = cx.limits.max_requests_per_connection;
        let host = self.hosts.entry(key).or_default();
        let conn = host
            .mux
            .iter()
            .copied()
            .find(|c| self.mux.get_mut(c).is_some_and(|m| m.has_room(max_requests)))?;
        self.bind_mux(conn, waiter, cx);
        Some(conn)
    }

    fn bind_mux(&mut self, conn: ConnId, waiter: StreamRef, cx: &mut PoolCtx<'_>) {
        let pooled = self.mux.get_mut(&conn).expect("binding an unknown connection");
        pooled.reserved.push(waiter);
        pooled.requests += 1;
        pooled.deadline = None;
        cx.stats.upstream_rq_total.inc();
        cx.stats.upstream_rq_active.inc();
        if cx.limits.max_requests_per_connection.is_some_and(|max| pooled.requests >= max) {
            // Its last stream: it drains once that ends.
            pooled.state = MuxState::Draining;
            cx.stats.upstream_cx_max_requests.inc();
        } else if pooled.requests >= MAX_STREAMS_PER_CONNECTION {
            // Client stream ids are odd and end at 2^31 - 1: drain before they run out.
            pooled.state = MuxState::Draining;
        }
    }

    /// Opens connections while pending requests outnumber the room the host's connections
    /// have or will have: an open one's spare streams, one still coming up as many as the
    /// host's peer allowed last time (the configured limit until one was heard), within
    /// `max_requests_per_connection`.
    pub(super) fn open_for_pending_mux(&mut self, key: PoolKey, cx: &mut PoolCtx<'_>) {
        loop {
            let Some(host) = self.hosts.get(&key) else { return };
            let mut per_conn = host.peer_limit.unwrap_or(usize::MAX).min(cx.limits.max_concurrent_streams);
            if let Some(max) = cx.limits.max_requests_per_connection {
                per_conn = per_conn.min(max as usize);
            }
            let room: usize = host
                .mux
                .iter()
                .filter_map(|c| self.mux.get(c))
                .map(|m| match m.state {
                    MuxState::Connecting => per_conn,
                    MuxState::Open => {
                        let left = cx
                            .limits
                            .max_requests_per_connection
                            .map_or(usize::MAX, |max| (max as usize).saturating_sub(m.requests as usize));
                        per_conn.saturating_sub(m.active()).min(left)
                    }
                    MuxState::Draining | MuxState::Gone => 0,
                })
                .sum();
            if host.pending.len() <= room {
                return;
            }
            let host = self.hosts.get_mut(&key).expect("looked up above");
            let Some(conn) = open_connection(host, key, cx) else { return };
            host.mux.push(conn);
            cx.stats.upstream_cx_http2_total.inc();
            let mut pooled = MuxConn {
                key,
                state: MuxState::Connecting,
                codec: Box::new(ClientCodec::new(cx.limits.http2)),
                limit: cx.limits.max_concurrent_streams,
                reserved: SmallVec::new(),
                streams: FxHashMap::default(),
                requests: 0,
                deadline: Some(cx.now + cx.limits.connect_timeout),
                armed: None,
            };
            if let Some(at) = pooled.deadline {
                pooled.armed = Some(at);
                cx.io.timer(conn, at);
            }
            self.mux.insert(conn, pooled);
        }
    }

    /// The bound request's head goes out as a new stream; false if the connection could not
    /// take it (it is gone or going away): the request is then free to try again.
    pub(crate) fn open_stream(
        &mut self,
        conn: ConnId,
        waiter: StreamRef,
        request: http::Request<()>,
        end: bool,
        cx: &mut PoolCtx<'_>,
    ) -> bool {
        let Some(pooled) = self.mux.get_mut(&conn) else { return false };
        pooled.reserved.retain(|w| *w != waiter);
        match pooled.codec.send_request(request, end) {
            Some(key) => {
                pooled.streams.insert(key, MuxStream { waiter, events: VecDeque::new() });
                self.drive_and_defer(conn, cx);
                true
            }
            None => {
                cx.request_done();
                false
            }
        }
    }

    pub(crate) fn send_data(&mut self, conn: ConnId, waiter: StreamRef, data: Bytes, cx: &mut PoolCtx<'_>) {
        let Some(pooled) = self.mux.get_mut(&conn) else { return };
        if let Some(key) = pooled.stream_of(waiter) {
            pooled.codec.send_data(key, data);
            self.drive_and_defer(conn, cx);
        }
    }

    pub(crate) fn send_end(&mut self, conn: ConnId, waiter: StreamRef, cx: &mut PoolCtx<'_>) {
        let Some(pooled) = self.mux.get_mut(&conn) else { return };
        if let Some(key) = pooled.stream_of(waiter) {
            pooled.codec.send_end(key);
            self.drive_and_defer(conn, cx);
        }
    }

    /// Request bytes of `waiter`'s stream not yet taken by h2.
    pub(crate) fn queued(&self, conn: ConnId, waiter: StreamRef) -> usize {
        self.mux.get(&conn).and_then(|m| Some(m.codec.queued(m.stream_of(waiter)?))).unwrap_or(0)
    }

    /// Holds back (or gives back again) the window of `waiter`'s response.
    pub(crate) fn pause_stream(
        &mut self,
        conn: ConnId,
        waiter: StreamRef,
        paused: bool,
        cx: &mut PoolCtx<'_>,
    ) {
        let Some(pooled) = self.mux.get_mut(&conn) else { return };
        let Some(key) = pooled.stream_of(waiter) else { return };
        if paused {
            pooled.codec.pause(key);
        } else {
            pooled.codec.resume(key);
            self.drive_and_defer(conn, cx);
        }
    }

    /// The next response event of `waiter`'s stream.
    pub(super) fn poll_mux(&mut self, conn: ConnId, waiter: StreamRef) -> Option<UpEvent> {
        let pooled = self.mux.get_mut(&conn)?;
        let key = pooled.stream_of(waiter)?;
        pooled.streams.get_mut(&key)?.events.pop_front()
    }

    /// `waiter` is done with its stream (its response ended, or it gave up: then the stream is
    /// reset). The room goes to a pending request, if any.
    pub(super) fn release_mux(
        &mut self,
        conn: ConnId,
        waiter: StreamRef,
        cancel: bool,
        cx: &mut PoolCtx<'_>,
    ) -> Released {
        let Some(pooled) = self.mux.get_mut(&conn) else { return Released::Idle };
        if pooled.state == MuxState::Gone {
            // The connection is closed already: only the stream's bookkeeping is left.
            if let Some(key) = pooled.stream_of(waiter) {
                pooled.streams.remove(&key);
                cx.request_done();
            }
            if pooled.streams.is_empty() {
                self.mux.remove(&conn);
            }
            return Released::Idle;
        }
        let before = pooled.active();
        pooled.reserved.retain(|w| *w != waiter);
        if let Some(key) = pooled.stream_of(waiter) {
            pooled.streams.remove(&key);
            if cancel {
                pooled.codec.cancel(key);
            } else {
                pooled.codec.remove(key);
            }
        }
        if pooled.active() == before {
            return Released::Idle;
        }
        cx.request_done();
        if cancel {
            cx.stats.upstream_rq_cancelled.inc();
        }
        self.drive_and_defer(conn, cx);
        let Some(pooled) = self.mux.get_mut(&conn) else { return Released::Idle };
        if pooled.state == MuxState::Draining && pooled.active() == 0 {
            self.closed(conn, false, cx);
            return Released::Close;
        }
        let waiter = self.take_pending_mux(conn, cx);
        let pooled = self.mux.get_mut(&conn).expect("still pooled");
        if pooled.active() == 0 {
            pooled.deadline = cx.limits.idle_timeout.map(|idle| cx.now + idle);
            arm(pooled, conn, cx);
        }
        match waiter {
            Some(waiter) => Released::Rebound { waiter },
            None => Released::Idle,
        }
    }

    /// Binds the oldest pending request of the connection's host if it has room.
    fn take_pending_mux(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> Option<StreamRef> {
        let max_requests = cx.limits.max_requests_per_connection;
        let pooled = self.mux.get_mut(&conn)?;
        if !pooled.has_room(max_requests) {
            return None;
        }
        let waiter = self.hosts.get_mut(&pooled.key)?.pending.pop_front()?;
        cx.breakers.pending.release();
        cx.stats.upstream_rq_pending_active.dec();
        self.bind_mux(conn, waiter, cx);
        Some(waiter)
    }

    /// An event on an HTTP/2 pool connection.
    pub(super) fn on_mux_event(
        &mut self,
        conn: ConnId,
        event: ConnEvent,
        cx: &mut PoolCtx<'_>,
    ) -> PoolOutput {
        let mut out = PoolOutput::default();
        let Some(pooled) = self.mux.get_mut(&conn) else { return out };
        match event {
            ConnEvent::Connected => {
                if pooled.state == MuxState::Connecting {
                    pooled.state = MuxState::Open;
                    pooled.deadline = None;
                    if let Some(host) = self.hosts.get_mut(&pooled.key) {
                        host.connecting -= 1;
                    }
                }
            }
            ConnEvent::ConnectFailed => {
                out.close = Some(Close::Abort);
                for waiter in self.closed_mux(conn, true, cx) {
                    out.events.push((waiter, PoolEvent::Failed(Failure::ConnectFailed)));
                }
                return out;
            }
            ConnEvent::Data(data) => pooled.codec.read(data),
            ConnEvent::ReadClosed => pooled.codec.read_closed(),
            ConnEvent::Closed => {
                out.close = Some(Close::Abort);
                for waiter in self.closed_mux(conn, true, cx) {
                    out.events.push((waiter, PoolEvent::UpstreamGone));
                }
                return out;
            }
            ConnEvent::Flushed => {}
        }
        let (events, gone) = self.drive(conn, cx);
        out.events.extend(events);
        if gone {
            out.close = Some(Close::Flush);
            return out;
        }
        // Room (the peer's SETTINGS, a stream that ended) goes to pending requests.
        while let Some(waiter) = self.take_pending_mux(conn, cx) {
            out.events.push((waiter, PoolEvent::Bound(conn)));
        }
        if let Some(pooled) = self.mux.get(&conn) {
            let limit = pooled.codec.peer_limit();
            if let Some(host) = self.hosts.get_mut(&pooled.key) {
                if limit > 0 {
                    host.peer_limit = Some(limit);
                }
            }
            let key = pooled.key;
            self.open_for_pending_mux(key, cx);
        }
        out
    }

    /// Drives the connection's codec after a call on one of its streams; the events it makes
    /// are delivered once the running machine returns.
    fn drive_and_defer(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) {
        let (events, gone) = self.drive(conn, cx);
        for (waiter, event) in events {
            cx.io.defer(waiter, event);
        }
        if gone {
            cx.io.close(conn, Close::Flush);
        }
    }

    /// Polls the codec until it has nothing more, sorting response events to their streams,
    /// and writes what h2 wrote. `gone`: the connection ended (the pool forgot it; its
    /// streams were told).
    fn drive(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> (SmallVec<[(StreamRef, PoolEvent); 2]>, bool) {
        let mut events: SmallVec<[(StreamRef, PoolEvent); 2]> = SmallVec::new();
        let Some(pooled) = self.mux.get_mut(&conn) else { return (events, false) };
        // h2 writes no more than the connection's buffer limit ahead of the socket: an
        // upstream that grants windows but does not read holds up its own streams only.
        pooled.codec.set_room(cx.limits.buffer_limit.saturating_sub(cx.io.queued(conn)));
        let mut ended = false;
        while let Some(polled) = pooled.codec.poll() {
            match polled {
                ClientPolled::Stream(key, event) => {
                    let Some(stream) = pooled.streams.get_mut(&key) else { continue };
                    let up = match event {
                        ClientEvent::Response(parts, end) => {
                            let (head, kind) = response_head(parts, end);
                            stream.events.push_back(UpEvent::Head(Box::new(head), kind));
                            if end {
                                stream.events.push_back(UpEvent::End);
                            }
                            None
                        }
                        ClientEvent::Data(data) => Some(UpEvent::Data(data)),
                        ClientEvent::End => Some(UpEvent::End),
                        ClientEvent::Reset { unprocessed: true, .. } => Some(UpEvent::Refused),
                        ClientEvent::Reset { reason, .. } => {
                            tracing::debug!(?reason, "upstream HTTP/2 stream reset");
                            Some(UpEvent::Error)
                        }
                        ClientEvent::Sent => {
                            events.push((stream.waiter, PoolEvent::UpstreamFlushed));
                            continue;
                        }
                    };
                    stream.events.extend(up);
                    let waiter = stream.waiter;
                    if !events.iter().any(|(w, e)| *w == waiter && matches!(e, PoolEvent::Response(_))) {
                        events.push((waiter, PoolEvent::Response(conn)));
                    }
                }
                ClientPolled::Closed(error) => {
                    if let Some(error) = &error {
                        tracing::debug!(%error, "upstream HTTP/2 connection ended");
                    }
                    // A GOAWAY seen only as the connection ends (its last responses came in
                    // the same read), or a clean close: the peer asked to close all the same.
                    let asked = error
                        .as_ref()
                        .is_none_or(|e| e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR));
                    if asked && pooled.state == MuxState::Open {
                        cx.stats.upstream_cx_close_notify.inc();
                    }
                    ended = true;
                    break;
                }
            }
        }
        if let Some(out) = pooled.codec.take_output() {
            cx.stats.upstream_cx_tx_bytes_total.add(out.len() as u64);
            cx.io.write(conn, out);
        }
        if !ended && pooled.state == MuxState::Open && pooled.codec.going_away() {
            // GOAWAY: its streams finish; new ones go elsewhere.
            pooled.state = MuxState::Draining;
            cx.stats.upstream_cx_close_notify.inc();
        }
        let empty_draining = pooled.state == MuxState::Draining && pooled.active() == 0;
        if ended || empty_draining {
            // Streams with events still queued keep them: their waiters pull them first.
            let unfinished = self.closed_mux(conn, !empty_draining, cx);
            events.extend(unfinished.into_iter().map(|w| (w, PoolEvent::UpstreamGone)));
            return (events, true);
        }
        (events, false)
    }

    /// The connection is gone: the pool forgets it. Returns the requests it left without a
    /// connection (bound ones; for a failed connect, the pending ones it was opened for).
    pub(super) fn closed_mux(
        &mut self,
        conn: ConnId,
        remote: bool,
        cx: &mut PoolCtx<'_>,
    ) -> SmallVec<[StreamRef; 2]> {
        let mut gone: SmallVec<[StreamRef; 2]> = SmallVec::new();
        let Some(pooled) = self.mux.get_mut(&conn) else { return gone };
        if pooled.state == MuxState::Gone {
            return gone;
        }
        cx.connection_gone(remote);
        let key = pooled.key;
        let host = self.hosts.entry(key).or_default();
        host.conns -= 1;
        host.mux.retain(|&c| c != conn);
        if pooled.state == MuxState::Connecting {
            host.connecting -= 1;
            cx.stats.upstream_cx_connect_fail.inc();
            // Fail the pending requests the attempts still in flight cannot serve.
            let serve = host.connecting.saturating_mul(pooled.limit);
            while host.pending.len() > serve && host.mux.is_empty() {
                let Some(waiter) = host.pending.pop_back() else { break };
                cx.pending_ejected();
                gone.push(waiter);
            }
        }
        pooled.state = MuxState::Gone;
        // A stream whose response came whole (or was refused) keeps it for its waiter to take;
        // the others lost their connection.
        let finished = |s: &MuxStream| {
            s.events.iter().any(|e| matches!(e, UpEvent::End | UpEvent::Error | UpEvent::Refused))
        };
        // Requests bound and not yet sent find the connection gone when they try, and go again
        // (the connection never saw them); they are settled here.
        for _ in pooled.reserved.drain(..) {
            cx.request_done();
        }
        let mut lost: SmallVec<[StreamRef; 2]> = SmallVec::new();
        pooled.streams.retain(|_, s| {
            let keep = finished(s);
            if !keep {
                lost.push(s.waiter);
            }
            keep
        });
        if !lost.is_empty() {
            tracing::debug!(?conn, lost = lost.len(), "upstream HTTP/2 connection closed under streams");
            cx.destroyed_with_requests(remote);
        }
        for waiter in lost {
            cx.request_done();
            gone.push(waiter);
        }
        if pooled.streams.is_empty() {
            self.mux.remove(&conn);
        }
        self.open_for_pending_mux(key, cx);
        self.forget_if_empty(key);
        self.wake_cluster(key.cluster, cx);
        gone
    }

    /// A timer of an HTTP/2 pool connection: its connect or idle deadline.
    pub(super) fn mux_timer(&mut self, conn: ConnId, cx: &mut PoolCtx<'_>) -> PoolOutput {
        let mut out = PoolOutput::default();
        let Some(pooled) = self.mux.get_mut(&conn) else { return out };
        pooled.armed = None;
        if pooled.deadline.is_none_or(|at| at > cx.now) {
            arm(pooled, conn, cx);
            return out;
        }
        match pooled.state {
            MuxState::Connecting => {
                cx.stats.upstream_cx_connect_timeout.inc();
                out.close = Some(Close::Abort);
                for waiter in self.closed_mux(conn, false, cx) {
                    out.events.push((waiter, PoolEvent::Failed(Failure::ConnectTimeout)));
                }
            }
            _ if pooled.active() == 0 => {
                cx.stats.upstream_cx_idle_timeout.inc();
                self.closed_mux(conn, false, cx);
                out.close = Some(Close::Flush);
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
impl Pools {
    /// Where every HTTP/2 pool connection stands, for failing tests.
    pub(super) fn describe_mux(&self) -> String {
        let mut out = String::new();
        for (conn, m) in &self.mux {
            out += &format!(
                "{conn:?}: {:?} heard_limit={} reserved={:?} streams={:?} requests={}\n",
                m.state,
                m.codec.peer_limit(),
                m.reserved,
                m.streams.values().map(|s| (s.waiter, s.events.len())).collect::<Vec<_>>(),
                m.requests
            );
        }
        for (key, host) in &self.hosts {
            out += &format!(
                "host {key:?}: pending={:?} connecting={} conns={} mux={:?}\n",
                host.pending, host.connecting, host.conns, host.mux
            );
        }
        out
    }
}

fn arm(pooled: &mut MuxConn, conn: ConnId, cx: &mut PoolCtx<'_>) {
    if let Some(at) = pooled.deadline {
        if pooled.armed.is_none_or(|armed| at < armed) {
            pooled.armed = Some(at);
            cx.io.timer(conn, at);
        }
    }
}
