//! Invariants on the stream of outputs and inputs, checked as they happen. Used by the
//! simulator and by the `proxy_inputs` fuzz target alike.

use std::collections::{BTreeMap, BTreeSet};

use burrow_core::{ConnId, Input, Output, QueryId};

#[derive(Clone, Copy, Debug, Default)]
struct IdState {
    upstream: bool,
    connected: bool,
    shutdown: bool,
    queued: usize,
    /// Exempt from the buffer bound (admin connections write each response whole).
    unbounded: bool,
}

/// The driver's view of the core's ids, with every rule of the contract that a driver can see:
/// ids live from `accept`/`Connect` to their one `Close`, are never reused while live, and
/// nothing names them after; no `Write` after `Shutdown`; nothing written to an outbound
/// connection before it is connected; what is queued towards a connection stays within the
/// buffer limit plus one read; query ids are unique while outstanding.
#[derive(Debug)]
pub struct Checker {
    live: BTreeMap<ConnId, IdState>,
    queries: BTreeSet<QueryId>,
    /// Most bytes ever queued towards one connection.
    pub max_queued: usize,
    /// What `max_queued` may reach: the largest configured buffer limit plus one read.
    pub bound: usize,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn new(bound: usize) -> Checker {
        Checker {
            live: BTreeMap::new(),
            queries: BTreeSet::new(),
            max_queued: 0,
            bound,
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, what: String) {
        self.violations.push(what);
    }

    pub fn is_live(&self, conn: ConnId) -> bool {
        self.live.contains_key(&conn)
    }

    pub fn live(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.live.keys().copied()
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn queued(&self, conn: ConnId) -> usize {
        self.live.get(&conn).map_or(0, |s| s.queued)
    }

    pub fn is_upstream(&self, conn: ConnId) -> bool {
        self.live.get(&conn).is_some_and(|s| s.upstream)
    }

    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.live.get(&conn).is_some_and(|s| s.connected)
    }

    pub fn is_shutdown(&self, conn: ConnId) -> bool {
        self.live.get(&conn).is_some_and(|s| s.shutdown)
    }

    pub fn outstanding_queries(&self) -> impl Iterator<Item = QueryId> + '_ {
        self.queries.iter().copied()
    }

    /// `Proxy::accept` returned `conn`.
    pub fn accepted(&mut self, conn: ConnId) {
        self.accepted_on(conn, false);
    }

    /// `Proxy::accept` returned `conn` on a listener with no buffer limit (the admin's).
    pub fn accepted_on(&mut self, conn: ConnId, unbounded: bool) {
        if self.live.insert(conn, IdState { connected: true, unbounded, ..IdState::default() }).is_some() {
            self.fail(format!("accept returned {conn:?}, which is still live"));
        }
    }

    pub fn output(&mut self, output: &Output) {
        match output {
            Output::Connect { conn, .. } => {
                let fresh = IdState { upstream: true, ..IdState::default() };
                if self.live.insert(*conn, fresh).is_some() {
                    self.fail(format!("Connect reused the live id {conn:?}"));
                }
            }
            Output::Write { conn, data } => {
                let Some(state) = self.live.get_mut(conn) else {
                    return self.fail(format!("Write to {conn:?}, which is not live (after its Close?)"));
                };
                let state = *state;
                if state.shutdown {
                    self.fail(format!("Write of {} bytes to {conn:?} after its Shutdown", data.len()));
                }
                if state.upstream && !state.connected {
                    self.fail(format!("Write of {} bytes to {conn:?} before it connected", data.len()));
                }
                if data.is_empty() {
                    self.fail(format!("empty Write to {conn:?}"));
                }
                let queued = state.queued + data.len();
                self.live.get_mut(conn).unwrap().queued = queued;
                if !state.unbounded {
                    self.max_queued = self.max_queued.max(queued);
                }
                if queued > self.bound && !state.unbounded {
                    self.fail(format!(
                        "{queued} bytes queued towards {conn:?}, over the bound {}",
                        self.bound
                    ));
                }
            }
            Output::Shutdown { conn } => match self.live.get_mut(conn) {
                Some(state) if state.shutdown => self.fail(format!("second Shutdown of {conn:?}")),
                Some(state) => state.shutdown = true,
                None => self.fail(format!("Shutdown of {conn:?}, which is not live")),
            },
            Output::Close { conn, .. } => {
                if self.live.remove(conn).is_none() {
                    self.fail(format!("Close of {conn:?}, which is not live (a second Close?)"));
                }
            }
            Output::PauseRead { conn } | Output::ResumeRead { conn } => {
                if !self.live.contains_key(conn) {
                    self.fail(format!("{output:?} names {conn:?}, which is not live"));
                }
            }
            Output::Resolve { query, .. } => {
                if !self.queries.insert(*query) {
                    self.fail(format!("Resolve reused the outstanding query id {query:?}"));
                }
            }
            Output::Listen { .. } | Output::Unlisten { .. } | Output::Log { .. } => {}
        }
    }

    /// An input the driver is about to hand to the core.
    pub fn input(&mut self, input: &Input) {
        match input {
            Input::Flushed { conn, bytes } => {
                if let Some(state) = self.live.get_mut(conn) {
                    state.queued = state.queued.saturating_sub(*bytes);
                }
            }
            Input::Connected { conn } => {
                if let Some(state) = self.live.get_mut(conn) {
                    state.connected = true;
                }
            }
            Input::Resolved { query, .. } => {
                self.queries.remove(query);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_core::CloseKind;
    use bytes::Bytes;

    fn write(conn: u32, n: usize) -> Output {
        Output::Write { conn: ConnId(conn), data: Bytes::from(vec![1; n]) }
    }

    #[test]
    fn catches_each_broken_rule() {
        let mut c = Checker::new(100);
        c.accepted(ConnId(0));
        c.output(&write(0, 10));
        assert!(c.violations.is_empty());
        c.output(&Output::Shutdown { conn: ConnId(0) });
        c.output(&write(0, 1));
        assert!(c.violations.pop().unwrap().contains("after its Shutdown"));
        c.output(&Output::Close { conn: ConnId(0), kind: CloseKind::Flush });
        c.output(&write(0, 1));
        assert!(c.violations.pop().unwrap().contains("not live"));
        c.output(&Output::Connect { conn: ConnId(1), addr: "10.0.0.1:1".parse().unwrap() });
        c.output(&write(1, 1));
        assert!(c.violations.pop().unwrap().contains("before it connected"));
        c.input(&Input::Connected { conn: ConnId(1) });
        c.output(&write(1, 200));
        assert!(c.violations.pop().unwrap().contains("over the bound"));
        c.accepted(ConnId(1));
        assert!(c.violations.pop().unwrap().contains("still live"));
        c.output(&Output::Connect { conn: ConnId(1), addr: "10.0.0.1:1".parse().unwrap() });
        assert!(c.violations.pop().unwrap().contains("reused"));
        assert!(c.violations.is_empty());
    }
}
