//! The network's events: clients connecting, connects finishing, reads delivered to the
//! proxy, writes flushed to peers, resets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use burrow_core::{CloseKind, CloseReason, Input, ListenerId};
use bytes::Bytes;

use super::link::{Link, Phase, Seg, Side};
use super::{Cause, Ev, PeerSlot, World};
use crate::peer::Action;

impl World {
    pub(super) fn client_start(&mut self, peer: usize, listener: u32) {
        let Some(local) = self.links.listener(ListenerId(listener)) else {
            self.tally.fault("client-refused-no-listener");
            self.call(peer, None, |p, cx| p.on_refused(cx));
            return;
        };
        let read_max = self.net.read_max;
        let slow = self.rng.chance(self.net.slow_reader);
        let key = self.links.next_key();
        let remote = SocketAddr::new(
            IpAddr::from([10, 200, (peer >> 8) as u8, peer as u8]),
            40_000 + (key % 20_000) as u16,
        );
        if slow {
            self.tally.fault("slow-reader");
        }
        // Terminators learn a tunnel's client from its address (a TCP proxy's tunnel request
        // carries it), before any of its bytes.
        if let Some(id) = self.peers[peer].peer.as_ref().and_then(|p| p.tunnel_id()) {
            self.ledger.remote_tunnels.insert(remote, id);
        }
        self.cause = Cause::Accept(key);
        let conn = self.proxy.accept(self.base + self.now, ListenerId(listener), remote, local);
        self.checker.accepted(conn);
        for v in self.checker.violations.drain(..) {
            self.notes.violation(self.now, v);
        }
        self.trace.accept(self.now, ListenerId(listener), conn);
        self.tally.inputs += 1;
        let mut link = Link::new(Side::Down { listener: listener as usize }, read_max, slow);
        link.phase = Phase::Open;
        link.peer = Some(peer);
        link.accepted = self.now;
        if self.links.accept(conn, link).is_err() {
            // A live id handed out again: the checker reported it; this client gets nothing.
            return;
        }
        self.peers[peer].link = Some(key);
        self.pump();
        self.check_gauges();
        self.call(peer, Some(key), |p, cx| p.on_open(cx));
    }

    pub(super) fn connect_done(&mut self, key: u64, ok: bool) {
        let link = &mut self.links[key];
        let Some(conn) = link.conn() else { return };
        if link.phase != Phase::Connecting {
            return;
        }
        self.cause = Cause::Input { link: key, data: false };
        if !ok {
            link.phase = Phase::Dead;
            self.input(Input::ConnectFailed { conn });
            return;
        }
        link.phase = Phase::Open;
        let addr = link.target.expect("upstream address");
        let slow = link.slow;
        if slow {
            self.tally.fault("slow-reader");
        }
        match self.servers.get_mut(&addr) {
            Some(server) => {
                let peer = (server.factory)(&mut self.peer_rng);
                let id = self.peers.len();
                self.peers.push(PeerSlot { peer: Some(peer), link: Some(key), client: false });
                self.links[key].peer = Some(id);
                self.input(Input::Connected { conn });
                self.call(id, Some(key), |p, cx| p.on_open(cx));
                if self.wound_down {
                    self.call(id, Some(key), |p, cx| p.on_wind_down(cx));
                }
            }
            // One of the proxy's own listeners: it accepts the other end.
            None => {
                self.input(Input::Connected { conn });
                self.accept_twin(key, addr);
            }
        }
        // Writes queued while connecting go out now.
        let link = &mut self.links[key];
        if (!link.outbound.is_empty() || link.shutdown || link.closed.is_some()) && !link.out_busy {
            link.out_busy = true;
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::Flush { link: key });
        }
    }

    /// The proxy connected to its own listener at `addr` (link `up`): it accepts the other
    /// socket of the pair, and the world relays between the two.
    fn accept_twin(&mut self, up: u64, addr: SocketAddr) {
        let Some((listener, local)) = self.links.listeners().find(|(_, a)| *a == addr) else { return };
        let key = self.links.next_key();
        let remote = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 30_000 + (up % 30_000) as u16);
        self.cause = Cause::Accept(key);
        let conn = self.proxy.accept(self.base + self.now, listener, remote, local);
        self.checker.accepted(conn);
        for v in self.checker.violations.drain(..) {
            self.notes.violation(self.now, v);
        }
        self.trace.accept(self.now, listener, conn);
        self.trace
            .note(self.now, || format!("net: link {up} is a loopback connection, accepted as link {key}"));
        self.tally.inputs += 1;
        let mut link = Link::new(Side::Down { listener: listener.0 as usize }, self.net.read_max, false);
        link.phase = Phase::Open;
        link.accepted = self.now;
        link.twin = Some(up);
        link.relayed_head = Some(Vec::new());
        if self.links.accept(conn, link).is_err() {
            return;
        }
        self.links[up].twin = Some(key);
        self.pump();
        self.check_gauges();
    }

    /// A loopback connection's request head is whole: the tunnel it carries, from the client
    /// address a TCP proxy's tunnel request names.
    pub(super) fn relayed_head(&mut self, key: u64, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let marker = format!("\r\n{}: ", crate::peers::PEER_HEADER);
        let tunnel = text
            .find(&marker)
            .and_then(|at| text[at + marker.len()..].split("\r\n").next())
            .and_then(|v| v.parse::<SocketAddr>().ok())
            .and_then(|addr| self.ledger.remote_tunnels.get(&addr).copied());
        let twin = self.links[key].twin;
        for k in std::iter::once(key).chain(twin) {
            self.links[k].tunnel = tunnel;
        }
    }

    /// Delivers the next read (or FIN, or reset) of a connection to the proxy.
    pub(super) fn deliver(&mut self, key: u64) {
        let tiny = self.rng.chance(self.net.tiny_reads);
        let link = &mut self.links[key];
        link.in_busy = false;
        let Some(conn) = link.conn() else { return };
        if link.told_closed || link.phase != Phase::Open || link.paused {
            return;
        }
        let input = match link.inbound.front_mut() {
            None => return,
            Some(Seg::Data(_)) => {
                let max = if tiny { 16 } else { link.read_max };
                let want = self.rng.usize(1, max);
                let link = &mut self.links[key];
                let mut read = Vec::new();
                while read.len() < want {
                    match link.inbound.front_mut() {
                        Some(Seg::Data(d)) => {
                            let take = (want - read.len()).min(d.len());
                            read.extend(d.drain(..take));
                            if d.is_empty() {
                                link.inbound.pop_front();
                            }
                        }
                        _ => break,
                    }
                }
                link.delivered += read.len() as u64;
                Input::Data { conn, data: Bytes::from(read) }
            }
            Some(Seg::Fin) => {
                link.inbound.pop_front();
                Input::ReadClosed { conn }
            }
            Some(Seg::Reset) => {
                link.inbound.clear();
                link.told_closed = true;
                Input::Closed { conn, reason: CloseReason::Reset }
            }
        };
        let more = !self.links[key].inbound.is_empty();
        self.cause = Cause::Input { link: key, data: matches!(input, Input::Data { .. }) };
        self.input(input);
        let link = &mut self.links[key];
        if more && !link.in_busy && link.conn().is_some() {
            link.in_busy = true;
            let delay = self.delay();
            self.schedule(self.now + delay, Ev::ToProxy { link: key });
        }
    }

    /// The peer reads some of what the proxy wrote; the proxy hears `Flushed`.
    pub(super) fn flush(&mut self, key: u64) {
        let (window, pause) = if self.links[key].slow {
            (self.rng.usize(256, 8 * 1024), Duration::from_millis(self.rng.range(5, 400)))
        } else {
            (self.rng.usize(1024, 256 * 1024), self.delay())
        };
        let link = &mut self.links[key];
        link.out_busy = false;
        if link.phase != Phase::Open {
            return;
        }
        if link.peer_reset || link.peer_closed {
            // The peer is gone: the write fails.
            let pending = !link.outbound.is_empty() || (link.shutdown && !link.peer_ended);
            link.outbound.clear();
            link.unflushed = 0;
            if pending && !link.told_closed {
                if let Some(conn) = link.conn() {
                    link.told_closed = true;
                    self.cause = Cause::Input { link: key, data: false };
                    self.input(Input::Closed { conn, reason: CloseReason::WriteError });
                }
            }
            return;
        }
        if link.peer_ended {
            return;
        }
        let chunk = link.take(window);
        let more = !link.outbound.is_empty();
        let conn = link.conn();
        // An abort drops what was queued, the FIN behind it too: the peer hears the reset.
        let finish = !more
            && (link.shutdown && link.closed != Some(CloseKind::Abort)
                || link.closed == Some(CloseKind::Flush));
        let peer = link.peer;
        let twin = link.twin;
        if !chunk.is_empty() {
            if let Some(conn) = conn {
                if !link.told_closed {
                    self.cause = Cause::Input { link: key, data: false };
                    self.input(Input::Flushed { conn, bytes: chunk.len() });
                }
            }
            if let Some(peer) = peer {
                let n = chunk.len();
                self.trace.note(self.now, || format!("net: link {key} -> peer {peer}: {n} bytes"));
                self.call(peer, Some(key), |p, cx| p.on_data(cx, &chunk));
            } else if let Some(twin) = twin {
                let n = chunk.len();
                self.trace.note(self.now, || format!("net: link {key} -> link {twin}: {n} bytes"));
                self.toward_proxy(twin, Action::Write(chunk));
            }
        }
        let link = &mut self.links[key];
        if !link.outbound.is_empty() {
            if !link.out_busy {
                link.out_busy = true;
                self.schedule(self.now + pause, Ev::Flush { link: key });
            }
        } else if finish && !link.peer_ended {
            if link.closed.is_some() {
                link.peer_ended = true;
            }
            if !link.fin_to_peer {
                link.fin_to_peer = true;
                let by_timer = link.closed_by_timer;
                if let Some(peer) = peer {
                    self.trace.note(self.now, || {
                        format!("net: link {key} -> peer {peer}: EOF (by timer: {by_timer})")
                    });
                    self.call_with(peer, Some(key), by_timer, |p, cx| p.on_eof(cx));
                } else if let Some(twin) = twin {
                    // A closed socket reads no more: what the other end writes then fails.
                    let closed = self.links[key].closed.is_some();
                    self.trace
                        .note(self.now, || format!("net: link {key} -> link {twin}: EOF (closed: {closed})"));
                    self.toward_proxy(twin, if closed { Action::Close } else { Action::Shutdown });
                }
            }
        }
    }

    pub(super) fn peer_reset(&mut self, key: u64) {
        let link = &mut self.links[key];
        if link.peer_ended || link.peer_closed {
            return;
        }
        link.peer_ended = true;
        if let Some(peer) = link.peer {
            self.trace.note(self.now, || format!("net: link {key} -> peer {peer}: reset"));
            self.call(peer, Some(key), |p, cx| p.on_reset(cx));
        } else if let Some(twin) = link.twin {
            self.trace.note(self.now, || format!("net: link {key} -> link {twin}: reset"));
            self.toward_proxy(twin, Action::Reset);
        }
    }

    pub(super) fn wind_down(&mut self) {
        self.trace.note(self.now, || "every client is done: winding down".to_string());
        for id in 0..self.peers.len() {
            let link = self.peers[id].link;
            if link.is_some_and(|l| self.links[l].conn().is_some() && !self.links[l].peer_ended) {
                self.call(id, link, |p, cx| p.on_wind_down(cx));
            }
        }
    }
}
