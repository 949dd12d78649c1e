//! Access log lines from the core, written by one thread per process, so a slow disk never
//! holds up a worker's loop. Files are opened (appending) before any worker starts; every
//! destination is flushed at least once per flush interval (`--file-flush-interval-msec`).

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use burrow_core::config::LogSink;
use burrow_core::stats::Counter;
use bytes::Bytes;

/// Lines waiting for the writer at most; past it, lines are dropped (and counted) rather than
/// held in memory without bound.
const QUEUE: usize = 64 * 1024;

/// The workers' end: hands lines to the writer thread.
#[derive(Clone)]
pub struct Logs {
    tx: Option<SyncSender<(usize, Bytes)>>,
    /// `access_log.lines_dropped`: lines lost because the writer fell behind.
    dropped: Counter,
}

impl Logs {
    /// Opens every sink and starts the writer; the thread ends once every `Logs` is dropped,
    /// after a last flush.
    pub fn start(
        sinks: &[LogSink],
        flush_every: Duration,
        dropped: Counter,
    ) -> Result<(Logs, Option<JoinHandle<()>>), String> {
        if sinks.is_empty() {
            return Ok((Logs { tx: None, dropped }, None));
        }
        let mut writers = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let out: Box<dyn Write + Send> = match sink {
                LogSink::Stdout => Box::new(io::stdout()),
                LogSink::Stderr => Box::new(io::stderr()),
                LogSink::File(path) => Box::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open access log {path}: {e}"))?,
                ),
            };
            writers.push(BufWriter::with_capacity(64 * 1024, out));
        }
        let (tx, rx) = mpsc::sync_channel::<(usize, Bytes)>(QUEUE);
        let thread = thread::Builder::new()
            .name("burrow-access-log".into())
            .spawn(move || {
                let mut next_flush = Instant::now() + flush_every;
                loop {
                    let wait = next_flush.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok((sink, line)) => {
                            if let Err(e) = writers[sink].write_all(&line) {
                                tracing::warn!("access log write failed: {e}");
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if Instant::now() >= next_flush {
                        flush(&mut writers);
                        next_flush = Instant::now() + flush_every;
                    }
                }
                flush(&mut writers);
            })
            .map_err(|e| format!("cannot start the access log thread: {e}"))?;
        Ok((Logs { tx: Some(tx), dropped }, Some(thread)))
    }

    /// Queues a line; never blocks.
    pub fn write(&self, sink: usize, line: Bytes) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((sink, line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn flush(writers: &mut [BufWriter<Box<dyn Write + Send>>]) {
    for writer in writers {
        if let Err(e) = writer.flush() {
            tracing::warn!("access log flush failed: {e}");
        }
    }
}
