//! The client side of a downstream HTTP connection, as the connection and its streams both
//! see it: which connection, listener and peer, its buffer limit, and its codec.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::codec::http1::Limits;
use crate::config::{Config, HttpConnectionManager, NetworkFilter};
use crate::downstream::codec::DownstreamCodec;
use crate::downstream::ctx::Ctx;
use crate::io::ConnId;

pub(crate) struct Client {
    pub(crate) id: ConnId,
    pub(crate) listener: usize,
    pub(crate) peer: SocketAddr,
    pub(crate) buffer_limit: usize,
    /// Reads the requests and writes the responses.
    pub(crate) codec: DownstreamCodec,
}

impl Client {
    /// A client speaking HTTP/1.1, with its listener's head limits and buffer limit.
    pub(crate) fn http1(config: &Config, id: ConnId, listener: usize, peer: SocketAddr) -> Client {
        let NetworkFilter::HttpConnectionManager(hcm) = &config.listeners[listener].filter;
        let limits = Limits::new(
            hcm.max_request_headers_kb,
            hcm.max_headers_count,
            hcm.http_protocol_options.accept_http_10,
        );
        Client {
            id,
            listener,
            peer,
            buffer_limit: config.listeners[listener].per_connection_buffer_limit_bytes as usize,
            codec: DownstreamCodec::http1(limits),
        }
    }

    /// The connection manager config of this client's listener.
    pub(crate) fn hcm<'c>(&self, config: &'c Config) -> &'c HttpConnectionManager {
        let NetworkFilter::HttpConnectionManager(hcm) = &config.listeners[self.listener].filter;
        hcm
    }

    /// Writes a response head (and body) to the client and counts it.
    pub(crate) fn send(&self, ctx: &mut Ctx, status: u16, response: Bytes) {
        let stats = &ctx.shared.http[self.listener];
        stats.response(status);
        stats.downstream_cx_tx_bytes_total.add(response.len() as u64);
        ctx.wire.write(self.id, response);
    }
}
