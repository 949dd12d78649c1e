//! The one object a driver sees.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::io::{ConnId, Input, ListenerId, Output};
use crate::shared::Shared;

/// A whole proxy worker: listeners, connections, clusters and timers.
pub struct Proxy {
    _config: Arc<Config>,
    _shared: Arc<Shared>,
}

impl Proxy {
    /// `now` and `wall` anchor the core's clock: `wall` is only used for `date` headers.
    pub fn new(config: Arc<Config>, shared: Arc<Shared>, now: Instant, wall: SystemTime) -> Proxy {
        let _ = (now, wall);
        Proxy { _config: config, _shared: shared }
    }

    /// A listener accepted a connection; the returned id names it from now on.
    pub fn accept(&mut self, now: Instant, listener: ListenerId, peer: SocketAddr, local: SocketAddr) -> ConnId {
        let _ = (now, listener, peer, local);
        todo!()
    }

    /// Feed one event from the driver.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let _ = (now, input);
        todo!()
    }

    /// The deadline from [`Proxy::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The next piece of work for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// The earliest instant at which [`Proxy::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Begin a graceful shutdown: stop accepting, let open connections finish for up to `drain`.
    pub fn shutdown(&mut self, now: Instant, drain: Duration) {
        let _ = (now, drain);
        todo!()
    }

    /// True once shut down and every connection is gone (or a listener failed to bind).
    pub fn is_finished(&self) -> bool {
        todo!()
    }
}
