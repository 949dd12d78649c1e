//! Transports: what sits between a connection's codec and its socket. Plain TCP now; TLS is
//! another variant of [`Transport`] in a later layer, which is why nothing above this module
//! emits [`Output::Write`] itself.
//!
//! The [`Wire`] is the core's output side for every connection. It counts what machines write
//! in application bytes, so buffer limits and back-pressure mean the same whatever the
//! transport adds; the driver's `Flushed` (bytes on the wire) is translated back into
//! application progress here.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::io::{CloseKind, ConnId, Output};

/// One connection event, as seen by the machine that owns the connection.
pub(crate) enum ConnEvent {
    Data(Bytes),
    ReadClosed,
    /// Reset or failed.
    Closed,
    Connected,
    ConnectFailed,
    /// Written bytes reached the socket; [`Wire::queued`] has dropped accordingly.
    Flushed,
}

/// How the core ends a connection. The driver only sees the final [`Output::Close`]: the
/// core waits for what is queued to be flushed itself (within [`CLOSE_FLUSH_TIMEOUT`] of no
/// progress), so a graceful end never depends on a grace period in the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// Flush what is queued, then close (FIN).
    Flush,
    /// Flush what is queued, then reset (RST): the far end of a reset learns it was cut.
    FlushThenReset,
    /// Drop what is queued and reset now.
    Abort,
}

/// A connection being closed that flushes nothing for this long is reset (Envoy's
/// `delayed_close_timeout` default); each flushed byte restarts the wait.
pub(crate) const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How a connection's bytes are carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    /// Application bytes are wire bytes.
    #[default]
    Plain,
}

/// Per-connection write accounting for back-pressure.
#[derive(Default)]
struct ConnIo {
    transport: Transport,
    /// Application bytes handed to the driver and not yet reported flushed.
    queued: usize,
    read_paused: bool,
}

/// The output queue, the connection id table and each connection's transport.
#[derive(Default)]
pub(crate) struct Wire {
    out: VecDeque<Output>,
    conns: Vec<ConnIo>,
    free: Vec<u32>,
}

impl Wire {
    /// A fresh connection id, plain until told otherwise.
    pub(crate) fn alloc(&mut self) -> ConnId {
        match self.free.pop() {
            Some(id) => ConnId(id),
            None => {
                self.conns.push(ConnIo::default());
                ConnId((self.conns.len() - 1) as u32)
            }
        }
    }

    /// The next output for the driver. A `Close` releases its id: the driver has seen it, so
    /// the id may be handed out again.
    pub(crate) fn pop(&mut self) -> Option<Output> {
        let output = self.out.pop_front()?;
        if let Output::Close { conn, .. } = output {
            self.conns[conn.0 as usize] = ConnIo::default();
            self.free.push(conn.0);
        }
        Some(output)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// An output that is not about one connection's bytes (listen, connect, resolve).
    pub(crate) fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }

    /// Queues application bytes for a connection and counts them against its buffer limit.
    pub(crate) fn write(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let io = &mut self.conns[conn.0 as usize];
        match io.transport {
            Transport::Plain => {
                io.queued += data.len();
                self.out.push_back(Output::Write { conn, data });
            }
        }
    }

    /// The driver flushed `wire` bytes of `conn`; returns the application bytes that makes.
    pub(crate) fn flushed(&mut self, conn: ConnId, wire: usize) -> Option<usize> {
        let io = self.conns.get_mut(conn.0 as usize)?;
        let app = match io.transport {
            Transport::Plain => wire,
        };
        io.queued = io.queued.saturating_sub(app);
        Some(app)
    }

    /// Application bytes written to `conn` that have not reached its socket yet.
    pub(crate) fn queued(&self, conn: ConnId) -> usize {
        self.conns[conn.0 as usize].queued
    }

    /// After what is queued, shut down the write side (FIN).
    pub(crate) fn shutdown(&mut self, conn: ConnId) {
        self.out.push_back(Output::Shutdown { conn });
    }

    /// The one `Close` of a connection.
    pub(crate) fn close(&mut self, conn: ConnId, kind: CloseKind) {
        self.out.push_back(Output::Close { conn, kind });
    }

    /// Whether reading `conn` is paused.
    pub(crate) fn read_paused(&self, conn: ConnId) -> bool {
        self.conns[conn.0 as usize].read_paused
    }

    /// Stops reading `conn`; true if it was being read.
    pub(crate) fn pause_read(&mut self, conn: ConnId) -> bool {
        let io = &mut self.conns[conn.0 as usize];
        let was_reading = !io.read_paused;
        if was_reading {
            io.read_paused = true;
            self.out.push_back(Output::PauseRead { conn });
        }
        was_reading
    }

    /// Reads `conn` again; true if it was paused.
    pub(crate) fn resume_read(&mut self, conn: ConnId) -> bool {
        let io = &mut self.conns[conn.0 as usize];
        let was_paused = io.read_paused;
        if was_paused {
            io.read_paused = false;
            self.out.push_back(Output::ResumeRead { conn });
        }
        was_paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_counts_application_bytes_until_flushed() {
        let mut wire = Wire::default();
        let conn = wire.alloc();
        wire.write(conn, Bytes::from_static(b"hello"));
        wire.write(conn, Bytes::new());
        assert_eq!(wire.queued(conn), 5);
        assert_eq!(wire.flushed(conn, 3), Some(3));
        assert_eq!(wire.queued(conn), 2);
        assert_eq!(wire.pop(), Some(Output::Write { conn, data: Bytes::from_static(b"hello") }));
        assert_eq!(wire.pop(), None);
    }

    #[test]
    fn pause_and_resume_are_emitted_once_each() {
        let mut wire = Wire::default();
        let conn = wire.alloc();
        wire.pause_read(conn);
        wire.pause_read(conn);
        wire.resume_read(conn);
        wire.resume_read(conn);
        let outputs: Vec<_> = std::iter::from_fn(|| wire.pop()).collect();
        assert_eq!(outputs, vec![Output::PauseRead { conn }, Output::ResumeRead { conn }]);
    }

    #[test]
    fn an_id_is_reused_only_after_the_driver_pulled_its_close() {
        let mut wire = Wire::default();
        let first = wire.alloc();
        wire.write(first, Bytes::from_static(b"x"));
        wire.close(first, CloseKind::Flush);
        assert_ne!(wire.alloc(), first);
        while wire.pop().is_some() {}
        assert_eq!(wire.alloc(), first);
        assert_eq!(wire.queued(first), 0, "a reused id starts with nothing queued");
    }
}
