//! What both burrow drivers need beyond sockets and time, written once:
//!
//! - [`cli`]: Envoy's flags;
//! - [`run`]: logging, config loading, `--mode validate`, worker threads, SIGTERM/SIGINT;
//! - [`engine`]: the connection table between the core and the sockets (write queues, flush
//!   reports, half-close, close, abort, pause/resume, read fairness, the one read
//!   buffer per worker), generic over a driver's socket primitives ([`engine::Net`]);
//! - [`net`]: socket set-up (SO_REUSEPORT listeners, nonblocking connects, RST on abort);
//! - [`dns`]: a resolver thread pool for drivers without an async resolver;
//! - [`access_log`]: the thread that writes access log lines off the workers' loops.
//!
//! A driver is then `fn main() -> ExitCode { burrow_driver::main(worker_loop) }` plus a worker
//! loop that waits for readiness and calls [`engine::Engine`].

pub mod access_log;
pub mod cli;
pub mod dns;
pub mod engine;
pub mod net;
pub mod run;

pub use cli::Args;
pub use engine::{Engine, Net};
pub use run::{main, Stop, Worker};
