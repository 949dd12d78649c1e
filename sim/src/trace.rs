//! The trace of a run: every input and output with its virtual time, hashed as it goes (for
//! the determinism check) and, when replaying one seed, kept as readable lines.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_core::{CloseKind, CloseReason, ConnId, Input, ListenerId, Output};

use crate::http::preview;

/// FNV-1a over a structured encoding of the events.
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
    pub events: u64,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        Trace { hash: 0xcbf2_9ce4_8422_2325, lines: keep_lines.then(Vec::new), events: 0 }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or_default()
    }

    pub fn keeps_lines(&self) -> bool {
        self.lines.is_some()
    }

    fn bytes(&mut self, data: &[u8]) {
        for b in data {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn head(&mut self, at: Duration, tag: u8) {
        self.events += 1;
        self.u64(at.as_nanos() as u64);
        self.bytes(&[tag]);
    }

    fn addr(&mut self, addr: &SocketAddr) {
        self.bytes(addr.to_string().as_bytes());
    }

    /// A free-form line (scenario notes, peer events): part of the readable trace only.
    pub fn note(&mut self, at: Duration, text: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>12} | {}", fmt_time(at), text()));
        }
    }

    pub fn accept(&mut self, at: Duration, listener: ListenerId, conn: ConnId) {
        self.head(at, 1);
        self.u64(u64::from(listener.0));
        self.u64(u64::from(conn.0));
        self.note(at, || format!("accept   L{} -> c{}", listener.0, conn.0));
    }

    pub fn timeout(&mut self, at: Duration) {
        self.head(at, 2);
        self.note(at, || "timeout".to_string());
    }

    pub fn input(&mut self, at: Duration, input: &Input) {
        self.head(at, 3);
        match input {
            Input::Data { conn, data } => {
                self.bytes(&[0]);
                self.u64(u64::from(conn.0));
                self.bytes(data);
            }
            Input::ReadClosed { conn } => {
                self.bytes(&[1]);
                self.u64(u64::from(conn.0));
            }
            Input::Closed { conn, reason } => {
                self.bytes(&[2, matches!(reason, CloseReason::Reset) as u8]);
                self.u64(u64::from(conn.0));
            }
            Input::Connected { conn } => {
                self.bytes(&[3]);
                self.u64(u64::from(conn.0));
            }
            Input::ConnectFailed { conn } => {
                self.bytes(&[4]);
                self.u64(u64::from(conn.0));
            }
            Input::Flushed { conn, bytes } => {
                self.bytes(&[5]);
                self.u64(u64::from(conn.0));
                self.u64(*bytes as u64);
            }
            Input::Resolved { query, addrs } => {
                self.bytes(&[6]);
                self.u64(u64::from(query.0));
                for a in addrs {
                    self.bytes(a.to_string().as_bytes());
                }
            }
            Input::ListenFailed { listener } => {
                self.bytes(&[7]);
                self.u64(u64::from(listener.0));
            }
        }
        self.note(at, || match input {
            Input::Data { conn, data } => {
                format!("in  c{:<4} data {:>6} {}", conn.0, data.len(), preview(data))
            }
            Input::Flushed { conn, bytes } => format!("in  c{:<4} flushed {bytes}", conn.0),
            other => format!("in  {other:?}"),
        });
    }

    pub fn output(&mut self, at: Duration, output: &Output) {
        self.head(at, 4);
        match output {
            Output::Listen { listener, addr } => {
                self.bytes(&[0]);
                self.u64(u64::from(listener.0));
                self.addr(addr);
            }
            Output::Unlisten { listener } => {
                self.bytes(&[1]);
                self.u64(u64::from(listener.0));
            }
            Output::Connect { conn, addr } => {
                self.bytes(&[2]);
                self.u64(u64::from(conn.0));
                self.addr(addr);
            }
            Output::Write { conn, data } => {
                self.bytes(&[3]);
                self.u64(u64::from(conn.0));
                self.bytes(data);
            }
            Output::Shutdown { conn } => {
                self.bytes(&[4]);
                self.u64(u64::from(conn.0));
            }
            Output::Close { conn, kind } => {
                self.bytes(&[5, matches!(kind, CloseKind::Abort) as u8]);
                self.u64(u64::from(conn.0));
            }
            Output::PauseRead { conn } => {
                self.bytes(&[6]);
                self.u64(u64::from(conn.0));
            }
            Output::ResumeRead { conn } => {
                self.bytes(&[7]);
                self.u64(u64::from(conn.0));
            }
            Output::Resolve { query, host } => {
                self.bytes(&[8]);
                self.u64(u64::from(query.0));
                self.bytes(host.as_bytes());
            }
            Output::Log { sink, line } => {
                self.bytes(&[9]);
                self.u64(*sink as u64);
                self.bytes(line);
            }
        }
        self.note(at, || match output {
            Output::Write { conn, data } => {
                format!("out c{:<4} write {:>5} {}", conn.0, data.len(), preview(data))
            }
            other => format!("out {other:?}"),
        });
    }
}

/// `12.345678s`.
pub fn fmt_time(at: Duration) -> String {
    format!("{}.{:06}s", at.as_secs(), at.subsec_micros())
}
