//! The ends of a TCP proxy's tunnel: the client's connection, and whatever carries the bytes
//! upstream (a TCP connection, an HTTP/1.1 POST body, or an HTTP/2 stream).

use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::http1;
use crate::downstream::ctx::Ctx;
use crate::io::{ConnId, StreamRef};
use crate::tunnel::Ends;
use crate::upstream::pool::{PoolCtx, Pools};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A raw connection: the client's, a plain upstream, or an HTTP/1.1 CONNECT's after its
    /// 2xx.
    Conn(ConnId),
    /// The body of an HTTP/1.1 POST on this connection: bytes go chunk-framed.
    Chunked(ConnId),
    /// The request's stream (numbered as the connection names its attempts) on a pooled
    /// HTTP/2 connection.
    Stream(ConnId, u32),
    /// Nothing yet: the request has no connection. The tunnel holds every byte meanwhile,
    /// so nothing is ever written here.
    Unbound,
}

pub(super) struct TcpEnds<'a> {
    pub(super) ctx: &'a mut Ctx,
    /// The client's connection: with a stream number, it names a pooled stream's request.
    pub(super) down: ConnId,
    pub(super) listener: usize,
    pub(super) cluster: usize,
    pub(super) now: Instant,
}

impl TcpEnds<'_> {
    fn pooled<T>(&mut self, f: impl FnOnce(&mut Pools, &mut PoolCtx<'_>) -> T) -> T {
        self.ctx.with_pool(self.cluster, self.now, f)
    }

    fn waiter(&self, stream: u32) -> StreamRef {
        StreamRef { conn: self.down, stream }
    }
}

impl Ends for TcpEnds<'_> {
    type End = Side;

    fn write(&mut self, end: Side, data: Bytes) {
        match end {
            Side::Conn(conn) => self.ctx.wire.write(conn, data),
            Side::Chunked(conn) => {
                let mut framed: SmallVec<[Bytes; 3]> = SmallVec::new();
                http1::encode_chunk(data, &mut framed);
                for piece in framed {
                    self.ctx.wire.write(conn, piece);
                }
            }
            Side::Stream(up, stream) => {
                let waiter = self.waiter(stream);
                self.pooled(|p, cx| p.send_data(up, waiter, data, cx));
            }
            Side::Unbound => debug_assert!(false, "a tunnel writes only to a bound end"),
        }
    }

    fn queued(&self, end: Side) -> usize {
        match end {
            Side::Conn(conn) | Side::Chunked(conn) => self.ctx.wire.queued(conn),
            Side::Stream(up, stream) => self.ctx.pools.queued(up, self.waiter(stream)),
            Side::Unbound => 0,
        }
    }

    fn shutdown(&mut self, end: Side) {
        match end {
            Side::Conn(conn) => self.ctx.wire.shutdown(conn),
            Side::Chunked(conn) => self.ctx.wire.write(conn, http1::last_chunk()),
            Side::Stream(up, stream) => {
                let waiter = self.waiter(stream);
                self.pooled(|p, cx| p.send_end(up, waiter, cx));
            }
            Side::Unbound => {}
        }
    }

    fn pause_read(&mut self, end: Side) {
        self.set_reading(end, false);
    }

    fn resume_read(&mut self, end: Side) {
        self.set_reading(end, true);
    }
}

impl TcpEnds<'_> {
    fn set_reading(&mut self, end: Side, read: bool) {
        match end {
            Side::Conn(conn) | Side::Chunked(conn) => {
                let changed =
                    if read { self.ctx.wire.resume_read(conn) } else { self.ctx.wire.pause_read(conn) };
                if changed && conn == self.down {
                    let stats = self.ctx.shared.tcp(self.listener);
                    match read {
                        true => stats.downstream_flow_control_resumed_reading_total.inc(),
                        false => stats.downstream_flow_control_paused_reading_total.inc(),
                    }
                }
            }
            Side::Stream(up, stream) => {
                let waiter = self.waiter(stream);
                self.pooled(|p, cx| p.pause_stream(up, waiter, !read, cx));
            }
            Side::Unbound => {}
        }
    }
}
