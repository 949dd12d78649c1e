//! The scripted peers: HTTP/1.1 clients (CONNECT, plain requests, upgrades), raw TCP clients,
//! and servers (echo targets, HTTP/1.1 origins, CONNECT terminators), plus what they share: a
//! paced writer and the self-describing tunnel stream.
//!
//! Every byte a peer sends is a function of a name (a tunnel or request id) and an offset
//! (see [`crate::rng::payload_byte`]), so every receiver checks every byte on arrival: in
//! order, not duplicated, not corrupted, and from the right sender.

mod client;
mod server;
mod terminator;

use std::collections::VecDeque;
use std::time::Duration;

pub use client::{
    BodyPlan, ConnectClient, ConnectPlan, Ending, H2ConnectClient, H2ConnectPlan, H2TunnelPlan, HttpClient,
    HttpPlan, RawClient, RawPlan, ReqPlan,
};
pub use server::{EchoMode, EchoTarget, HttpOrigin, OriginProfile};
pub use terminator::{Terminator, TerminatorProfile, PEER_FORMAT, PEER_HEADER};

use crate::peer::Cx;
use crate::rng::{payload_byte, Rng};

/// The token an [`Outbox`] uses for its pacing timer.
pub const PACE: u64 = u64::MAX - 1;

/// Tunnel streams start with `SIMT`, the tunnel id and the payload length.
pub const MAGIC: &[u8; 4] = b"SIMT";
pub const HEADER: u64 = 16;
/// What banner-sending targets write before anything else.
pub const BANNER: &[u8] = b"SIM-BANNER\r\n";

/// Salts so that request bodies, response bodies and tunnel payloads of one id differ.
pub const REQ_BODY: u64 = 0x5245_5142_4f44_5900;
pub const RESP_BODY: u64 = 0x5253_5042_4f44_5900;

/// Byte `k` of tunnel `id`'s stream (header, then `len` payload bytes).
pub fn stream_byte(id: u64, len: u64, k: u64) -> u8 {
    if k < HEADER {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(MAGIC);
        header[4..12].copy_from_slice(&id.to_be_bytes());
        header[12..].copy_from_slice(&(len as u32).to_be_bytes());
        header[k as usize]
    } else {
        payload_byte(id, k - HEADER)
    }
}

pub fn stream(id: u64, len: u64, from: u64, to: u64) -> Vec<u8> {
    (from..to).map(|k| stream_byte(id, len, k)).collect()
}

/// Parses a tunnel stream header: (id, payload length).
pub fn parse_header(header: &[u8]) -> Option<(u64, u64)> {
    if header.len() < HEADER as usize || &header[..4] != MAGIC {
        return None;
    }
    let id = u64::from_be_bytes(header[4..12].try_into().unwrap());
    let len = u64::from(u32::from_be_bytes(header[12..16].try_into().unwrap()));
    Some((id, len))
}

/// What an outbox does, in order.
#[derive(Debug)]
pub enum Item {
    Data(Vec<u8>),
    Fin,
    Close,
    Reset,
    /// Reported back to the peer when reached (everything before it is written).
    Mark(u64),
    /// Wait this long before going on.
    Pause(Duration),
}

/// What happened while an outbox ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Wrote(usize),
    Fin,
    Close,
    Reset,
    Mark(u64),
}

/// A peer's writer: writes at once, or paced (pieces of at most `chunk` bytes with pauses of
/// up to `pause_us` between them), always in order.
#[derive(Debug, Default)]
pub struct Outbox {
    items: VecDeque<Item>,
    pace: Option<(usize, u64)>,
    armed: bool,
    stopped: bool,
    /// Stream offset of everything queued so far.
    pub queued: u64,
    pub written: u64,
}

impl Outbox {
    pub fn new(pace: Option<(usize, u64)>) -> Outbox {
        Outbox { pace, ..Outbox::default() }
    }

    pub fn push(&mut self, item: Item) {
        if let Item::Data(d) = &item {
            if d.is_empty() {
                return;
            }
            self.queued += d.len() as u64;
        }
        self.items.push_back(item);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Nothing more will be written (the connection is gone).
    pub fn stop(&mut self) {
        self.stopped = true;
        self.items.clear();
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Writes what may be written now.
    pub fn run(&mut self, cx: &mut Cx<'_>, rng: &mut Rng) -> Vec<Done> {
        let mut done = Vec::new();
        if self.armed || self.stopped {
            return done;
        }
        while let Some(item) = self.items.pop_front() {
            match item {
                Item::Data(mut data) => match self.pace {
                    Some((chunk, pause)) => {
                        let n = rng.usize(1, chunk.min(data.len()));
                        let rest = data.split_off(n);
                        self.written += n as u64;
                        done.push(Done::Wrote(n));
                        cx.write(data);
                        if rest.is_empty() {
                            // Marks are bookkeeping: they are reached with the bytes before them.
                            while let Some(Item::Mark(m)) = self.items.front() {
                                done.push(Done::Mark(*m));
                                self.items.pop_front();
                            }
                        } else {
                            self.items.push_front(Item::Data(rest));
                        }
                        self.armed = true;
                        cx.timer(Duration::from_micros(rng.range(0, pause)), PACE);
                        return done;
                    }
                    None => {
                        self.written += data.len() as u64;
                        done.push(Done::Wrote(data.len()));
                        cx.write(data);
                    }
                },
                Item::Fin => {
                    cx.shutdown();
                    done.push(Done::Fin);
                }
                Item::Close => {
                    cx.close();
                    done.push(Done::Close);
                }
                Item::Reset => {
                    cx.reset();
                    done.push(Done::Reset);
                    self.stop();
                    return done;
                }
                Item::Mark(m) => done.push(Done::Mark(m)),
                Item::Pause(d) => {
                    self.armed = true;
                    cx.timer(d, PACE);
                    return done;
                }
            }
        }
        done
    }

    /// The pacing timer fired.
    pub fn on_timer(&mut self, cx: &mut Cx<'_>, rng: &mut Rng) -> Vec<Done> {
        self.armed = false;
        self.run(cx, rng)
    }
}

/// How a peer paces its writes: mostly at once, sometimes slowly.
pub fn pace(rng: &mut Rng, slow_per_mille: u32) -> Option<(usize, u64)> {
    if rng.chance(slow_per_mille) {
        Some((rng.usize(1, 4096), rng.range(1_000, 300_000)))
    } else if rng.chance(300) {
        Some((rng.usize(512, 64 * 1024), rng.range(0, 2_000)))
    } else {
        None
    }
}
