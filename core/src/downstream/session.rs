//! A downstream connection, whichever protocol it speaks: the one object the proxy keeps for
//! it. A TCP proxy listener's connections are raw ([`TcpConn`]); an HTTP listener's speak
//! HTTP/1.1 or HTTP/2. With `codec_type: AUTO` the protocol is decided by the connection's first bytes, as
//! Envoy decides it: the HTTP/2 connection preface means prior-knowledge HTTP/2 (h2c), anything
//! else HTTP/1.1. A connection counts as one or the other only once its bytes said which.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::config::{CodecType, NetworkFilter};
use crate::downstream::conn::HttpConn;
use crate::downstream::ctx::Ctx;
use crate::downstream::h2::H2Conn;
use crate::io::{ConnId, QueryId};
use crate::shared::Shared;
use crate::stats::Gauge;
use crate::tcp_proxy::TcpConn;
use crate::transport::ConnEvent;
use crate::tunnel::Closes;
use crate::upstream::pool::PoolEvent;

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The session itself lives in a box in the proxy's slot; an HTTP/2 connection (h2's state is
/// kilobytes) has a box of its own, so that HTTP/1.1 connections stay small.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Session {
    /// HTTP/1.1, or not yet known (`AUTO` before the first bytes), with what was read so far
    /// while those bytes could still be the preface.
    Http1 {
        conn: HttpConn,
        sniffed: Option<BytesMut>,
    },
    Http2(Box<H2Conn>),
    Tcp(Box<TcpConn>),
}

impl Session {
    pub(crate) fn new(
        ctx: &mut Ctx,
        now: Instant,
        id: ConnId,
        listener: usize,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> (Session, Closes) {
        ctx.shared.listeners[listener].downstream_cx_total.inc();
        ctx.shared.listeners[listener].downstream_cx_active.inc();
        if let NetworkFilter::TcpProxy(_) = ctx.config.listeners[listener].filter {
            let (conn, closes) = TcpConn::new(ctx, now, (id, listener), peer, local);
            return (Session::Tcp(Box::new(conn)), closes);
        }
        let stats = &ctx.shared.http(listener);
        stats.downstream_cx_total.inc();
        stats.downstream_cx_active.inc();
        match ctx.config.listeners[listener].hcm().codec_type {
            CodecType::Http2 => {
                let (conn, closes) = H2Conn::new(ctx, now, (id, listener), peer, local, Bytes::new());
                (Session::Http2(Box::new(conn)), closes)
            }
            CodecType::Http1 => {
                let mut conn = HttpConn::new(ctx, now, id, listener, peer, local);
                conn.count_http1(ctx);
                (Session::Http1 { conn, sniffed: None }, Vec::new())
            }
            CodecType::Auto => {
                let conn = HttpConn::new(ctx, now, id, listener, peer, local);
                (Session::Http1 { conn, sniffed: Some(BytesMut::new()) }, Vec::new())
            }
        }
    }

    pub(crate) fn on_downstream(&mut self, ctx: &mut Ctx, now: Instant, event: ConnEvent) -> Closes {
        match self {
            Session::Http1 { conn, sniffed: sniffed @ Some(_) } => {
                let ConnEvent::Data(data) = event else { return conn.on_downstream(ctx, now, event) };
                let seen = sniffed.as_mut().expect("matched above");
                let take = (PREFACE.len() - seen.len()).min(data.len());
                seen.extend_from_slice(&data[..take]);
                if seen[..] != PREFACE[..seen.len()] {
                    // HTTP/1.1: what came before waits in its codec; these bytes follow it.
                    *sniffed = None;
                    conn.count_http1(ctx);
                    return conn.on_downstream(ctx, now, ConnEvent::Data(data));
                }
                if seen.len() < PREFACE.len() {
                    // Could still be the preface: held where an HTTP/1.1 head would be, so
                    // that a client stalling here meets the same timeouts.
                    conn.hold(ctx, now, data);
                    return Vec::new();
                }
                let (id, listener, peer, local) = conn.identity();
                ctx.shared.http(listener).downstream_cx_rx_bytes_total.add(data.len() as u64);
                let held = conn.take_held();
                let first = if held.is_empty() { data } else { [held, data].concat().into() };
                let (h2, closes) = H2Conn::new(ctx, now, (id, listener), peer, local, first);
                *self = Session::Http2(Box::new(h2));
                closes
            }
            Session::Http1 { conn, .. } => conn.on_downstream(ctx, now, event),
            Session::Http2(conn) => conn.on_downstream(ctx, now, event),
            Session::Tcp(conn) => conn.on_downstream(ctx, now, event),
        }
    }

    /// An event on a connection to a CONNECT target or an upgraded upstream.
    pub(crate) fn on_upstream(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        up: ConnId,
        event: ConnEvent,
    ) -> Closes {
        match self {
            Session::Http1 { conn, .. } => conn.on_upstream(ctx, now, event),
            Session::Http2(conn) => conn.on_upstream(ctx, now, up, event),
            Session::Tcp(conn) => conn.on_upstream(ctx, now, up, event),
        }
    }

    pub(crate) fn on_pool(&mut self, ctx: &mut Ctx, now: Instant, stream: u32, event: PoolEvent) -> Closes {
        match self {
            Session::Http1 { conn, .. } => conn.on_pool(ctx, now, stream, event),
            Session::Http2(conn) => conn.on_pool(ctx, now, stream, event),
            Session::Tcp(conn) => conn.on_pool(ctx, now, stream, event),
        }
    }

    pub(crate) fn on_resolved(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        query: QueryId,
        addrs: Vec<IpAddr>,
    ) -> Closes {
        match self {
            Session::Http1 { conn, .. } => conn.on_resolved(ctx, now, query, addrs),
            Session::Http2(conn) => conn.on_resolved(ctx, now, query, addrs),
            // A TCP proxy resolves no names of its own.
            Session::Tcp(_) => Vec::new(),
        }
    }

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        match self {
            Session::Http1 { conn, .. } => conn.on_timer(ctx, now),
            Session::Http2(conn) => conn.on_timer(ctx, now),
            Session::Tcp(conn) => conn.on_timer(ctx, now),
        }
    }

    /// Shutting down: an HTTP/2 connection sends GOAWAY (an HTTP/1.1 one closes after its
    /// response, which says `connection: close`).
    pub(crate) fn drain(&mut self, ctx: &mut Ctx, now: Instant) -> Closes {
        match self {
            Session::Http1 { .. } | Session::Tcp(_) => Vec::new(),
            Session::Http2(conn) => conn.drain(ctx, now),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        match self {
            Session::Http1 { conn, .. } => conn.is_idle(),
            Session::Http2(conn) => conn.is_idle(),
            Session::Tcp(_) => false,
        }
    }

    pub(crate) fn socket_gauges(&self, shared: &Shared) -> SmallVec<[Gauge; 3]> {
        match self {
            Session::Http1 { conn, .. } => conn.socket_gauges(shared),
            Session::Http2(conn) => conn.socket_gauges(shared),
            Session::Tcp(conn) => conn.socket_gauges(shared),
        }
    }

    pub(crate) fn finish(self, ctx: &mut Ctx, now: Instant) -> Closes {
        match self {
            Session::Http1 { conn, .. } => conn.finish(ctx, now),
            Session::Http2(conn) => (*conn).finish(ctx, now),
            Session::Tcp(conn) => (*conn).finish(ctx, now),
        }
    }
}
