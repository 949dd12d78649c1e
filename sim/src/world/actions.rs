//! Calls into peers, and what their actions do to the network.

use crate::peer::{Action, Cx, Peer};

use super::link::{Phase, Seg};
use super::{Ev, World};

impl World {
    pub(super) fn call(
        &mut self,
        peer: usize,
        link: Option<u64>,
        f: impl FnOnce(&mut dyn Peer, &mut Cx<'_>),
    ) {
        self.call_with(peer, link, false, f)
    }

    pub(super) fn call_with(
        &mut self,
        peer: usize,
        link: Option<u64>,
        by_timer: bool,
        f: impl FnOnce(&mut dyn Peer, &mut Cx<'_>),
    ) {
        // A loopback connection's accepted end names its tunnel itself.
        let tunnel_hint = link
            .and_then(|l| self.links.get(l))
            .and_then(|l| l.opened_for)
            .and_then(|d| self.links.get(d))
            .and_then(|d| {
                d.peer.and_then(|p| self.peers[p].peer.as_ref()).and_then(|p| p.tunnel_id()).or(d.tunnel)
            });
        let Some(mut p) = self.peers[peer].peer.take() else { return };
        let (marks, delivered): (&[(u64, u64)], u64) = match link.and_then(|l| self.links.get(l)) {
            Some(l) => (&l.marks, l.delivered),
            None => (&[], 0),
        };
        let mut cx = Cx {
            now: self.now,
            ledger: &mut self.ledger,
            tally: &mut self.tally,
            notes: &mut self.notes,
            actions: Vec::new(),
            by_timer,
            marks,
            delivered,
            tunnel_hint,
        };
        f(p.as_mut(), &mut cx);
        let actions = std::mem::take(&mut cx.actions);
        self.peers[peer].peer = Some(p);
        for action in actions {
            self.peer_action(peer, link, action);
        }
    }

    fn peer_action(&mut self, peer: usize, link: Option<u64>, action: Action) {
        if let Action::Timer(after, token) = action {
            self.schedule(self.now + after, Ev::PeerTimer { peer, token });
            return;
        }
        let Some(key) = link else { return };
        self.trace.note(self.now, || match &action {
            Action::Write(d) => format!("peer {peer} on link {key}: write {}", d.len()),
            other => format!("peer {peer} on link {key}: {other:?}"),
        });
        self.toward_proxy(key, action);
    }

    /// What the far end of link `key` (a peer, or the proxy itself through a loopback
    /// connection) does to the connection: bytes, FIN, close or reset on their way in.
    pub(super) fn toward_proxy(&mut self, key: u64, action: Action) {
        let delay = self.delay();
        let link = &mut self.links[key];
        if link.peer_reset || link.peer_closed {
            return;
        }
        match action {
            Action::Write(data) => {
                if link.peer_fin {
                    self.notes.violation(self.now, "sim: a peer wrote after its own FIN");
                    return;
                }
                if let Some(head) = &mut link.relayed_head {
                    head.extend_from_slice(&data);
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        link.head_ends.push(end as u64 + 4);
                        let head = link.relayed_head.take().unwrap_or_default();
                        self.relayed_head(key, &head[..end]);
                    }
                }
                let link = &mut self.links[key];
                link.inbound.push_back(Seg::Data(data));
            }
            Action::Shutdown => {
                if link.peer_fin {
                    return;
                }
                link.peer_fin = true;
                link.inbound.push_back(Seg::Fin);
            }
            Action::Close => {
                if !link.peer_fin {
                    link.inbound.push_back(Seg::Fin);
                }
                link.peer_fin = true;
                link.peer_closed = true;
                // Bytes still queued towards this peer will fail to write.
                if !link.outbound.is_empty() && !link.out_busy {
                    link.out_busy = true;
                    self.schedule(self.now + delay, Ev::Flush { link: key });
                }
            }
            Action::Reset => {
                link.peer_reset = true;
                link.peer_ended = true;
                // Unread bytes are lost, and so is a FIN behind them.
                if link.inbound.iter().any(|s| matches!(s, Seg::Data(_))) {
                    link.inbound.clear();
                }
                link.inbound.push_back(Seg::Reset);
            }
            Action::HeadEnd(offset) => {
                link.head_ends.push(offset);
                return;
            }
            Action::Timer(..) => unreachable!(),
        }
        let link = &mut self.links[key];
        if link.conn().is_some() && link.phase == Phase::Open && !link.in_busy && !link.paused {
            link.in_busy = true;
            self.schedule(self.now + delay, Ev::ToProxy { link: key });
        }
    }
}
