//! Process set-up shared by both drivers: flags, logging, config loading, worker threads and
//! signals. A driver's `main` is `burrow_driver::main(its_worker_loop)`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use burrow_core::config::Config;
use burrow_core::Shared;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

use crate::access_log::Logs;
use crate::cli::{Args, LogLevel, Mode};

/// The configuration used when no `-c` is given: a loopback-only forward proxy.
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/default.yaml");

/// What a worker loop is handed: its share of the process.
pub struct Worker {
    /// 0-based worker number.
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    /// Set on SIGTERM/SIGINT (or when another worker failed); register a wake-up with
    /// [`Stop::on_stop`].
    pub stop: Stop,
    /// `--drain-time-s`: the grace period handed to [`burrow_core::Proxy::shutdown`].
    pub drain: Duration,
    /// Where access log lines go.
    pub logs: Logs,
}

/// The process-wide stop flag, plus a wake-up for every worker blocked waiting for IO.
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    stopped: AtomicBool,
    wakers: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl Stop {
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// `wake` is called (from another thread) when the stop flag is raised; at once if it is
    /// already up.
    pub fn on_stop(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self.0.wakers.lock().unwrap();
        wakers.push(Box::new(wake));
        if self.is_stopped() {
            (wakers[wakers.len() - 1])();
        }
    }

    /// Raise the flag and wake every worker.
    pub fn trigger(&self) {
        self.0.stopped.store(true, Ordering::Release);
        for wake in self.0.wakers.lock().unwrap().iter() {
            wake();
        }
    }
}

/// A whole driver binary: parse flags, set up logging, load the config, then validate or serve
/// with `worker` running on each worker thread. `worker` returns when its proxy is finished;
/// an `Err` (say, a listener that could not be bound) makes the process exit 1.
pub fn main<F>(worker: F) -> ExitCode
where
    F: Fn(Worker) -> Result<(), String> + Send + Sync + 'static,
{
    let args = Args::parse();
    init_logging(args.log_level);
    let (name, config) = match load_config(args.config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    match args.mode {
        Mode::Validate => {
            println!("configuration '{name}' OK");
            ExitCode::SUCCESS
        }
        Mode::Serve => run(&args, config, worker),
    }
}

/// Reads and checks the configuration: the file at `path`, or [`DEFAULT_CONFIG`]. Returns its
/// display name and the config, or an error of the form `<file>: <field path>: <message>`.
pub fn load_config(path: Option<&Path>) -> Result<(String, Config), String> {
    let (name, text) = match path {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
            (name, text)
        }
        None => ("<built-in default>".to_string(), DEFAULT_CONFIG.to_string()),
    };
    let config = Config::from_yaml(&text).map_err(|e| format!("{name}: {e}"))?;
    Ok((name, config))
}

/// Logs go to stderr through `tracing`; RUST_LOG, when set, overrides `-l`.
pub fn init_logging(level: LogLevel) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: ignoring RUST_LOG ({e})");
            EnvFilter::new(level.directive())
        }),
        _ => EnvFilter::new(level.directive()),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true)
        .try_init();
}

/// The machine's name, for `%HOSTNAME%` in formats.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what gethostname is told.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0)?;
    (rc == 0).then(|| String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Serve: `args.workers()` threads each running `worker` with its own core, until a stop
/// signal has drained them all. The first SIGTERM/SIGINT starts the drain; a second exits at
/// once with status 1.
pub fn run<F>(args: &Args, config: Config, worker: F) -> ExitCode
where
    F: Fn(Worker) -> Result<(), String> + Send + Sync + 'static,
{
    let config = Arc::new(config);
    let shared = Shared::new(&config);
    let shared = Arc::new(match hostname() {
        Some(name) => shared.with_hostname(name),
        None => shared,
    });
    let dropped = shared.stats.counter("access_log.lines_dropped");
    let (logs, log_thread) = match Logs::start(&config.access_log_sinks, args.file_flush_interval(), dropped)
    {
        Ok(started) => started,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Stop::default();

    let signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals_handle = signals.handle();
    let signal_stop = stop.clone();
    let spawned = thread::Builder::new().name("burrow-signals".into()).spawn(move || {
        let mut signals = signals;
        for (count, signal) in signals.forever().enumerate() {
            let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
            if count == 0 {
                tracing::info!("{name}: draining connections");
                signal_stop.trigger();
            } else {
                tracing::warn!("{name} again: exiting without draining");
                std::process::exit(1);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the signal thread: {e}");
        return ExitCode::FAILURE;
    }

    let worker = Arc::new(worker);
    let (done_tx, done_rx) = mpsc::channel();
    let mut ok = true;
    let mut threads = Vec::new();
    for index in 0..args.workers() {
        let context = Worker {
            index,
            config: config.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
            drain: args.drain_time(),
            logs: logs.clone(),
        };
        let worker = worker.clone();
        let done = done_tx.clone();
        let spawned = thread::Builder::new().name(format!("burrow-worker-{index}")).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(context)))
                .unwrap_or_else(|_| Err("panicked".to_string()));
            let _ = done.send((index, result));
        });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                tracing::error!("cannot start worker {index}: {e}");
                ok = false;
                stop.trigger();
                break;
            }
        }
    }
    drop(done_tx);
    // One worker failing (a listener that could not be bound) stops the others.
    for (index, result) in done_rx {
        if let Err(e) = result {
            tracing::error!("worker {index} failed: {e}");
            ok = false;
            stop.trigger();
        }
    }
    for thread in threads {
        ok &= thread.join().is_ok();
    }
    // The last sender: the writer flushes what it has and ends.
    drop(logs);
    if let Some(thread) = log_thread {
        ok &= thread.join().is_ok();
    }
    signals_handle.close();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn stop_wakes_early_and_late_registrations() {
        let stop = Stop::default();
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        stop.on_stop(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!stop.is_stopped());
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        stop.trigger();
        assert!(stop.is_stopped());
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        let w = woken.clone();
        stop.on_stop(move || {
            w.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(woken.load(Ordering::SeqCst), 11);
    }
}
