//! The proxy's outputs: the virtual driver executes them, the world times what follows
//! (deliveries, connects, DNS questions) and checks they were asked for.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::{CloseKind, ConnId, Output, QueryId};

use crate::report::Finding;
use crate::vnet::Executed;

use super::link::{Link, Phase, Side};
use super::{Cause, Ev, World};

impl World {
    pub(super) fn pump(&mut self) {
        while let Some(output) = self.proxy.poll_output() {
            self.checker.output(&output);
            self.trace.output(self.now, &output);
            self.tally.outputs += 1;
            let after_resolve = match &output {
                Output::Write { conn, .. } => self.links.conn(*conn).is_some_and(|l| l.after_resolve),
                _ => false,
            };
            for v in std::mem::take(&mut self.checker.violations) {
                if after_resolve && v.contains("over the bound") {
                    self.notes.signature(self.now, Finding::EarlyDataUnboundedWhileResolving, v);
                } else {
                    self.notes.violation(self.now, v);
                }
            }
            self.apply(output);
        }
    }

    /// The virtual driver executes the output; the world times what follows of it.
    fn apply(&mut self, output: Output) {
        match self.links.execute(output) {
            Executed::Connect { key, conn, addr } => self.connect(key, conn, addr),
            Executed::Write { key, conn, data } => {
                let delay = self.delay();
                let link = &self.links[key];
                let multiplexed = link
                    .peer
                    .and_then(|p| self.peers[p].peer.as_ref())
                    .is_some_and(|p| p.streams().is_some());
                // Nothing goes to a client before its first request head is complete (later
                // heads are judged precisely by the client, offset by offset), except the
                // stream idle timeout's 408 to a head that stalled: the client checks that the
                // stall really outlasted the timeout.
                if matches!(link.side, Side::Down { .. })
                    && !multiplexed
                    && link.head_ends.first().is_some_and(|end| link.delivered < *end)
                    && !data.starts_with(b"HTTP/1.1 408 ")
                {
                    let (delivered, end) = (link.delivered, link.head_ends[0]);
                    self.notes.violation(
                        self.now,
                        format!("wrote {} bytes to {conn:?} when {delivered} of its first {end} head bytes had arrived", data.len()),
                    );
                }
                let link = &mut self.links[key];
                let mark = (link.written, link.delivered);
                link.marks.push(mark);
                self.flush_soon(key, delay);
            }
            Executed::Shutdown { key, .. } => {
                let delay = self.delay();
                self.flush_soon(key, delay);
            }
            Executed::Close { key, kind, .. } => {
                let by_timer = self.cause == Cause::Timer || self.links[key].ended_by_timer;
                self.retried(key);
                let delay = self.delay();
                if by_timer {
                    // Every connection of a tunnel that a timeout ended may see it cut short.
                    if let Some(id) = self.serving(key) {
                        self.ledger.tunnel(id).timer_ended = true;
                    }
                }
                let link = &mut self.links[key];
                link.closed_by_timer = by_timer;
                link.inbound.clear();
                if link.phase != Phase::Open {
                    link.phase = Phase::Dead;
                    return;
                }
                match kind {
                    CloseKind::Abort => self.schedule(self.now + delay, Ev::PeerReset { link: key }),
                    CloseKind::Flush => {
                        if !link.out_busy {
                            link.out_busy = true;
                            self.schedule(self.now + delay, Ev::Flush { link: key });
                        }
                    }
                }
            }
            Executed::ResumeRead { key, .. } => {
                let delay = self.delay();
                let link = &mut self.links[key];
                if !link.inbound.is_empty() && !link.in_busy {
                    link.in_busy = true;
                    self.schedule(self.now + delay, Ev::ToProxy { link: key });
                }
            }
            Executed::Resolve { query, host } => self.resolve(query, host),
            // Bookkeeping only; a refused output is already the checker's violation.
            Executed::Listen { .. }
            | Executed::Unlisten { .. }
            | Executed::PauseRead { .. }
            | Executed::Log { .. }
            | Executed::Refused(_) => {}
        }
    }

    /// Written bytes or a FIN of an open connection reach its peer after `delay`.
    fn flush_soon(&mut self, key: u64, delay: Duration) {
        let link = &mut self.links[key];
        if link.phase == Phase::Open && !link.out_busy {
            link.out_busy = true;
            self.schedule(self.now + delay, Ev::Flush { link: key });
        }
    }

    /// A timer closes `key`, a TCP proxy's attempt that did not connect in time: the
    /// connection the same timer opened just before is the next attempt of the same client.
    fn retried(&mut self, key: u64) {
        let link = &self.links[key];
        let plain = matches!(link.side, Side::Up { cluster: Some(c) } if self.plain_tcp[c]);
        if self.cause == Cause::Timer && plain && link.phase != Phase::Open && !self.orphans.is_empty() {
            if let Some(client) = link.opened_for {
                let next = self.orphans.remove(0);
                self.links[next].opened_for = Some(client);
            }
        }
    }

    /// The core opened `conn` (record `key`): is it asked for, and how does it go?
    fn connect(&mut self, key: u64, conn: ConnId, addr: SocketAddr) {
        let opened_for = match self.cause {
            Cause::Start => {
                self.notes.violation(self.now, format!("Connect to {addr} with no request (at start-up)"));
                None
            }
            Cause::Input { link, data: true } | Cause::Resolved(Some(link)) => Some(link),
            // A TCP proxy connects for a client as it accepts it, and again when an attempt
            // fails (a timer's retries are matched in `retried`).
            Cause::Accept(link) => Some(link),
            Cause::Input { link, data: false } => {
                self.links.get(link).and_then(|l| l.opened_for).filter(|d| self.tcp_client(*d))
            }
            _ => None,
        };
        match opened_for.and_then(|l| self.links.get(l).map(|down| (l, down))) {
            // A TCP proxy's client asks by connecting.
            Some((l, _)) if self.tcp_client(l) => {}
            Some((_, down)) if matches!(down.side, Side::Down { .. }) => {
                if down.head_ends.first().is_none_or(|end| down.delivered < *end) {
                    self.notes.violation(
                        self.now,
                        format!(
                            "Connect to {addr} for a downstream connection with no complete request head"
                        ),
                    );
                }
            }
            _ => {
                let asked = self.links.links().any(|(key, l)| {
                    matches!(l.side, Side::Down { .. })
                        && l.conn().is_some()
                        && (l.head_ends.first().is_some_and(|end| l.delivered >= *end)
                            || self.tcp_client(key))
                });
                if !asked {
                    self.notes
                        .violation(self.now, format!("Connect to {addr} while no client has asked anything"));
                }
            }
        }
        let cluster = self.cluster_of(addr);
        if opened_for.is_none() && self.cause == Cause::Timer && cluster.is_some_and(|c| self.plain_tcp[c]) {
            self.orphans.push(key);
        }
        self.check_family(addr, cluster);
        let slow = self.rng.chance(self.net.slow_reader);
        let read_max = self.net.read_max;
        let mut link = Link::new(Side::Up { cluster }, read_max, slow);
        link.after_resolve = matches!(self.cause, Cause::Resolved(Some(_)));
        link.opened_for = opened_for;
        self.links[key].ext = link;
        let listening = self.links.listeners().any(|(_, a)| a == addr);
        let (refuse, blackhole) = match self.servers.get(&addr) {
            Some(s) => (s.refuse + self.net.refuse, s.blackhole + self.net.blackhole),
            None if listening => (self.net.refuse, self.net.blackhole),
            None => (1000, 0),
        };
        let roll = self.rng.below(1000) as u32;
        if roll < blackhole {
            self.tally.fault("connect-never-completes");
            self.trace.note(self.now, || format!("net: connect to {addr} ({conn:?}) will never complete"));
            self.links[key].phase = Phase::Dead;
        } else if roll < blackhole + refuse {
            if self.servers.contains_key(&addr) || listening {
                self.tally.fault("connect-refused");
            }
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::ConnectDone { link: key, ok: false });
        } else {
            let delay = if self.rng.chance(self.net.slow_connect) {
                self.tally.fault("connect-slow");
                Duration::from_millis(self.rng.range(100, 3_000))
            } else {
                self.delay()
            };
            self.schedule(self.now + delay, Ev::ConnectDone { link: key, ok: true });
        }
    }

    fn resolve(&mut self, query: QueryId, host: String) {
        let cause = match self.cause {
            Cause::Input { link, .. } => Some(link),
            Cause::Resolved(link) => link,
            _ => None,
        };
        self.query_cause.insert(query, cause);
        self.schedule(self.now, Ev::DnsAsk { query, host });
    }
}
