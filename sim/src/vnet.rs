//! One virtual driver: executes the core's [`Output`]s against a table of virtual
//! connections, listeners and DNS queries, with no sockets.
//!
//! Every harness that plays the driver's part runs its outputs through [`VirtualNet::execute`]:
//! the simulator's [`crate::world::World`], the `proxy_inputs` fuzz driver
//! ([`crate::fuzz`]) and the core's integration-test net (`core/tests/support`). The net does
//! the bookkeeping every driver does alike (which ids are live, where a connection was opened
//! to, what is queued towards it and not yet flushed, FIN after the queue, how it was closed,
//! whether it is read, which listeners are bound, which names are being resolved) and checks
//! the id rules once (an output for an id that is not live, a `Connect` or accept reusing a
//! live id). It hands back an [`Executed`]: what happened, so the caller applies its own
//! policy (the simulator's delays, faults and peers, the test net's auto-flush, the fuzz
//! driver's byte-driven choices). A new `Output` variant is one edit here; a caller matches
//! the new `Executed` variant only if it has something of its own to do.
//!
//! Connections are records under a [`Key`] numbered in creation order: the id is released
//! at `Close` (the core may reuse it), the record stays until the caller
//! [forgets](VirtualNet::forget) it, so a simulator can still deliver the close (FIN or
//! reset) to the far end and a test can look at a connection after it closed. The core
//! closes with [`CloseKind::Flush`] only once every byte it wrote was reported flushed (it
//! waits, within its own deadline, and resets otherwise), so a close never leaves bytes to
//! drain: a flushing close is just the FIN, an abort drops what is queued. Each record
//! carries the caller's own state `E` beside the shared fields, reachable directly
//! (`VConn<E>` dereferences to `E`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut, Index, IndexMut};

use burrow_core::{CloseKind, ConnId, ListenerId, Output, QueryId};
use bytes::Bytes;

/// A connection record's number: creation order, never reused (ids are).
pub type Key = u64;

/// One virtual connection as the driver sees it: accepted, or opened by a `Connect`.
#[derive(Debug)]
pub struct VConn<E = ()> {
    /// The id the core handed out for it (released at `Close`: see [`VConn::conn`]).
    pub id: ConnId,
    /// Where the core connected it to (upstream connections only).
    pub target: Option<SocketAddr>,
    /// Written and not yet taken by the far end (see [`VConn::take`]), in order.
    pub outbound: VecDeque<Bytes>,
    /// Written and not yet reported flushed.
    pub unflushed: usize,
    /// Bytes written in all.
    pub written: u64,
    /// The core shut down its write side: FIN once `outbound` is out.
    pub shutdown: bool,
    /// Bytes written after the shutdown (a bug if ever non-zero).
    pub written_after_fin: usize,
    /// How the core closed it; `None` while the id is live.
    pub closed: Option<CloseKind>,
    /// The core asked not to be read (`PauseRead`, until `ResumeRead`).
    pub paused: bool,
    /// The caller's own state for this connection.
    pub ext: E,
}

impl<E> VConn<E> {
    fn new(id: ConnId, target: Option<SocketAddr>, ext: E) -> VConn<E> {
        VConn {
            id,
            target,
            outbound: VecDeque::new(),
            unflushed: 0,
            written: 0,
            shutdown: false,
            written_after_fin: 0,
            closed: None,
            paused: false,
            ext,
        }
    }

    /// The id while it is live (until the core's `Close`).
    pub fn conn(&self) -> Option<ConnId> {
        self.closed.is_none().then_some(self.id)
    }

    /// The far end reads up to `max` bytes off the front of `outbound`; they count as flushed
    /// (`unflushed` goes down by as many).
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let mut chunk = Vec::new();
        while chunk.len() < max {
            let Some(front) = self.outbound.front_mut() else { break };
            let take = (max - chunk.len()).min(front.len());
            chunk.extend_from_slice(&front.split_to(take));
            if front.is_empty() {
                self.outbound.pop_front();
            }
        }
        self.unflushed -= chunk.len();
        chunk
    }
}

impl<E> Deref for VConn<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.ext
    }
}

impl<E> DerefMut for VConn<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.ext
    }
}

/// An output (or accept) that breaks the id rules of the driver contract; nothing of it was
/// applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// The output names an id that is not live (never handed out, or after its `Close`).
    NotLive { conn: ConnId, output: &'static str },
    /// `Connect` or accept handed out an id that is still live.
    Reused { conn: ConnId, by: &'static str },
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misuse::NotLive { conn, output } => write!(f, "{output} for {conn:?}, which is not live"),
            Misuse::Reused { conn, by } => write!(f, "{by} reused the live id {conn:?}"),
        }
    }
}

/// What executing one output did: the bookkeeping is done, the caller reacts (times the
/// delivery, injects faults, tells peers). Connection variants name the record and the id.
#[derive(Debug)]
pub enum Executed {
    /// A listener is bound.
    Listen { listener: ListenerId, addr: SocketAddr },
    /// A listener is gone (`addr` is `None` if it was not bound).
    Unlisten { listener: ListenerId, addr: Option<SocketAddr> },
    /// A new record for `conn`, opening towards `addr` (its `ext` is `E::default()`).
    Connect { key: Key, conn: ConnId, addr: SocketAddr },
    /// `data` was queued at the back of `outbound`.
    Write { key: Key, conn: ConnId, data: Bytes },
    /// FIN after the queue.
    Shutdown { key: Key, conn: ConnId },
    /// The id is released; the record stays, closed with `kind` (an abort dropped its queue).
    Close { key: Key, conn: ConnId, kind: CloseKind },
    /// Not read until its `ResumeRead`.
    PauseRead { key: Key, conn: ConnId },
    /// Read again: what waited may be delivered.
    ResumeRead { key: Key, conn: ConnId },
    /// A query is outstanding (see [`VirtualNet::queries`]).
    Resolve { query: QueryId, host: String },
    /// An access log line (the virtual driver keeps no files).
    Log { sink: usize, line: Bytes },
    /// The output broke the id rules; nothing was applied.
    Refused(Misuse),
}

/// The virtual driver's tables: connection records (with the live id → record index),
/// listeners and outstanding DNS queries. `E` is the caller's own per-connection state.
#[derive(Debug)]
pub struct VirtualNet<E = ()> {
    links: BTreeMap<Key, VConn<E>>,
    by_conn: BTreeMap<ConnId, Key>,
    next_key: Key,
    listeners: BTreeMap<ListenerId, SocketAddr>,
    queries: Vec<(QueryId, String)>,
}

impl<E> Default for VirtualNet<E> {
    fn default() -> Self {
        VirtualNet {
            links: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            next_key: 0,
            listeners: BTreeMap::new(),
            queries: Vec::new(),
        }
    }
}

impl<E> VirtualNet<E> {
    pub fn new() -> VirtualNet<E> {
        VirtualNet::default()
    }

    /// Applies one output. Outputs naming an id that is not live, and a `Connect` under a
    /// live id, are [`Executed::Refused`] and change nothing.
    pub fn execute(&mut self, output: Output) -> Executed
    where
        E: Default,
    {
        let (conn, what) = match output {
            Output::Listen { listener, addr } => {
                self.listeners.insert(listener, addr);
                return Executed::Listen { listener, addr };
            }
            Output::Unlisten { listener } => {
                let addr = self.listeners.remove(&listener);
                return Executed::Unlisten { listener, addr };
            }
            Output::Connect { conn, addr } => {
                return match self.open(conn, Some(addr), E::default(), "Connect") {
                    Ok(key) => Executed::Connect { key, conn, addr },
                    Err(misuse) => Executed::Refused(misuse),
                };
            }
            Output::Resolve { query, host } => {
                self.queries.push((query, host.clone()));
                return Executed::Resolve { query, host };
            }
            Output::Log { sink, line } => return Executed::Log { sink, line },
            Output::Write { conn, .. } => (conn, "Write"),
            Output::Shutdown { conn } => (conn, "Shutdown"),
            Output::Close { conn, .. } => (conn, "Close"),
            Output::PauseRead { conn } => (conn, "PauseRead"),
            Output::ResumeRead { conn } => (conn, "ResumeRead"),
        };
        let Some(key) = self.by_conn.get(&conn).copied() else {
            return Executed::Refused(Misuse::NotLive { conn, output: what });
        };
        let c = self.links.get_mut(&key).expect("a live id has a record");
        match output {
            Output::Write { data, .. } => {
                let len = data.len();
                if c.shutdown {
                    c.written_after_fin += len;
                }
                c.written += len as u64;
                c.unflushed += len;
                c.outbound.push_back(data.clone());
                Executed::Write { key, conn, data }
            }
            Output::Shutdown { .. } => {
                c.shutdown = true;
                Executed::Shutdown { key, conn }
            }
            Output::Close { kind, .. } => {
                c.closed = Some(kind);
                if kind == CloseKind::Abort {
                    c.outbound.clear();
                    c.unflushed = 0;
                }
                self.by_conn.remove(&conn);
                Executed::Close { key, conn, kind }
            }
            Output::PauseRead { .. } => {
                c.paused = true;
                Executed::PauseRead { key, conn }
            }
            Output::ResumeRead { .. } => {
                c.paused = false;
                Executed::ResumeRead { key, conn }
            }
            Output::Listen { .. }
            | Output::Unlisten { .. }
            | Output::Connect { .. }
            | Output::Resolve { .. }
            | Output::Log { .. } => {
                unreachable!("handled above")
            }
        }
    }

    /// `Proxy::accept` returned `conn`: a new record for it, with the caller's state.
    pub fn accept(&mut self, conn: ConnId, ext: E) -> Result<Key, Misuse> {
        self.open(conn, None, ext, "accept")
    }

    fn open(
        &mut self,
        conn: ConnId,
        target: Option<SocketAddr>,
        ext: E,
        by: &'static str,
    ) -> Result<Key, Misuse> {
        if self.by_conn.contains_key(&conn) {
            return Err(Misuse::Reused { conn, by });
        }
        let key = self.next_key;
        self.next_key += 1;
        self.links.insert(key, VConn::new(conn, target, ext));
        self.by_conn.insert(conn, key);
        Ok(key)
    }

    /// The key the next accepted or opened connection will get.
    pub fn next_key(&self) -> Key {
        self.next_key
    }

    /// The record of a live id.
    pub fn key(&self, conn: ConnId) -> Option<Key> {
        self.by_conn.get(&conn).copied()
    }

    pub fn get(&self, key: Key) -> Option<&VConn<E>> {
        self.links.get(&key)
    }

    /// The record of a live id.
    pub fn conn(&self, conn: ConnId) -> Option<&VConn<E>> {
        self.key(conn).map(|key| &self.links[&key])
    }

    pub fn conn_mut(&mut self, conn: ConnId) -> Option<&mut VConn<E>> {
        self.key(conn).map(|key| self.links.get_mut(&key).expect("a live id has a record"))
    }

    /// The live id's record, else the last closed record that had the id.
    pub fn latest(&self, conn: ConnId) -> Option<&VConn<E>> {
        self.conn(conn).or_else(|| self.links.values().rev().find(|c| c.id == conn))
    }

    /// Live connections, in id order.
    pub fn live(&self) -> impl Iterator<Item = (Key, &VConn<E>)> + '_ {
        self.by_conn.values().map(|key| (*key, &self.links[key]))
    }

    pub fn live_count(&self) -> usize {
        self.by_conn.len()
    }

    /// Every record not forgotten, live or closed, in key (creation) order.
    pub fn links(&self) -> impl DoubleEndedIterator<Item = (Key, &VConn<E>)> + '_ {
        self.links.iter().map(|(key, c)| (*key, c))
    }

    /// Drops a record (a live one releases its id too).
    pub fn forget(&mut self, key: Key) -> Option<VConn<E>> {
        let c = self.links.remove(&key)?;
        if self.by_conn.get(&c.id) == Some(&key) {
            self.by_conn.remove(&c.id);
        }
        Some(c)
    }

    pub fn listener(&self, listener: ListenerId) -> Option<SocketAddr> {
        self.listeners.get(&listener).copied()
    }

    /// Bound listeners, in id order.
    pub fn listeners(&self) -> impl Iterator<Item = (ListenerId, SocketAddr)> + '_ {
        self.listeners.iter().map(|(id, addr)| (*id, *addr))
    }

    /// Outstanding queries, in the order asked.
    pub fn queries(&self) -> &[(QueryId, String)] {
        &self.queries
    }

    /// Takes the `index`th outstanding query (to answer it).
    pub fn take_query(&mut self, index: usize) -> (QueryId, String) {
        self.queries.remove(index)
    }

    /// Takes every outstanding query.
    pub fn take_queries(&mut self) -> Vec<(QueryId, String)> {
        std::mem::take(&mut self.queries)
    }

    /// The query is being answered: it is no longer outstanding.
    pub fn answered(&mut self, query: QueryId) -> Option<String> {
        let at = self.queries.iter().position(|(q, _)| *q == query)?;
        Some(self.queries.remove(at).1)
    }
}

impl<E> Index<Key> for VirtualNet<E> {
    type Output = VConn<E>;

    fn index(&self, key: Key) -> &VConn<E> {
        self.links.get(&key).unwrap_or_else(|| panic!("no connection record {key}"))
    }
}

impl<E> IndexMut<Key> for VirtualNet<E> {
    fn index_mut(&mut self, key: Key) -> &mut VConn<E> {
        self.links.get_mut(&key).unwrap_or_else(|| panic!("no connection record {key}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(conn: u32, data: &'static [u8]) -> Output {
        Output::Write { conn: ConnId(conn), data: Bytes::from_static(data) }
    }

    #[test]
    fn bookkeeping_and_id_rules() {
        let mut net: VirtualNet<u8> = VirtualNet::new();
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(matches!(
            net.execute(Output::Listen { listener: ListenerId(0), addr: listen }),
            Executed::Listen { .. }
        ));
        assert_eq!(net.listener(ListenerId(0)), Some(listen));
        let down = net.accept(ConnId(0), 7).unwrap();
        assert_eq!(net.accept(ConnId(0), 7), Err(Misuse::Reused { conn: ConnId(0), by: "accept" }));
        let Executed::Connect { key: up, .. } = net.execute(Output::Connect { conn: ConnId(1), addr }) else {
            panic!()
        };
        assert_eq!((net[up].target, *net[up], net[down].target), (Some(addr), 0, None));
        assert!(matches!(
            net.execute(Output::Connect { conn: ConnId(1), addr }),
            Executed::Refused(Misuse::Reused { .. })
        ));

        assert!(matches!(net.execute(write(0, b"hello")), Executed::Write { key, .. } if key == down));
        net.execute(Output::Shutdown { conn: ConnId(0) });
        net.execute(write(0, b"!"));
        let c = &mut net[down];
        assert_eq!((c.unflushed, c.written, c.written_after_fin, c.shutdown), (6, 6, 1, true));
        assert_eq!(c.take(3), b"hel");
        assert_eq!(c.take(100), b"lo!");
        assert_eq!(c.unflushed, 0);

        net.execute(Output::PauseRead { conn: ConnId(1) });
        assert!(net[up].paused);
        net.execute(Output::ResumeRead { conn: ConnId(1) });
        assert!(!net[up].paused);

        net.execute(Output::Close { conn: ConnId(0), kind: CloseKind::Flush });
        assert_eq!(net[down].conn(), None);
        assert_eq!(net.latest(ConnId(0)).unwrap().closed, Some(CloseKind::Flush));
        assert_eq!(net.live_count(), 1);
        for output in [
            write(0, b"x"),
            Output::Shutdown { conn: ConnId(0) },
            Output::Close { conn: ConnId(0), kind: CloseKind::Abort },
            Output::PauseRead { conn: ConnId(0) },
            Output::ResumeRead { conn: ConnId(9) },
        ] {
            assert!(matches!(net.execute(output), Executed::Refused(Misuse::NotLive { .. })));
        }
        assert_eq!(net[down].written, 6, "nothing applied after the close");

        // The id is free again: a new record; the old one stays until forgotten.
        let again = net.accept(ConnId(0), 1).unwrap();
        assert_ne!(again, down);
        assert_eq!(net.latest(ConnId(0)).unwrap().closed, None);
        assert!(net.forget(down).is_some());
        assert_eq!(net.key(ConnId(0)), Some(again));

        net.execute(write(1, b"queued"));
        net.execute(Output::Close { conn: ConnId(1), kind: CloseKind::Abort });
        assert_eq!((net[up].unflushed, net[up].outbound.len()), (0, 0), "an abort drops the queue");

        net.execute(Output::Resolve { query: QueryId(3), host: "a".into() });
        net.execute(Output::Resolve { query: QueryId(4), host: "b".into() });
        assert_eq!(net.answered(QueryId(3)).as_deref(), Some("a"));
        assert_eq!(net.take_queries(), vec![(QueryId(4), "b".to_string())]);
        assert!(matches!(
            net.execute(Output::Unlisten { listener: ListenerId(0) }),
            Executed::Unlisten { addr: Some(_), .. }
        ));
    }
}
