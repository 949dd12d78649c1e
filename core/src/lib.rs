//! burrow's core: every protocol decision of the proxy, with no IO of its own.
//!
//! # The core's contract
//!
//! The core never touches a socket, file, thread, clock or random source. A driver owns those
//! and talks to one [`Proxy`] per worker only through plain values:
//!
//! - **Inputs**, each with the current time `now`: [`Proxy::accept`] for an accepted socket,
//!   [`Proxy::handle`] for every other [`Input`] (bytes read, the peer's half-close, a socket
//!   failure, a connect result, bytes flushed to a socket, a DNS answer), and
//!   [`Proxy::handle_timeout`] once the deadline from [`Proxy::poll_timeout`] has passed.
//! - **Outputs**, pulled with [`Proxy::poll_output`] until `None`: listen, connect, write
//!   (`Bytes`, never copied), shut down the write side, close, pause or resume reading,
//!   resolve a name. Execute them in order.
//! - **Ids** ([`ConnId`], [`ListenerId`], [`QueryId`]) are small integers. A connection id
//!   lives until the core emits its one [`Output::Close`]; the id may be reused after the driver
//!   has pulled that close, so inputs for a closed id are simply ignored.
//! - **Back-pressure**: the driver reports [`Input::Flushed`] as queued bytes reach the socket.
//!   When what is queued towards a connection passes the buffer limit
//!   (`per_connection_buffer_limit_bytes`, 1 MiB by default), the core pauses reading the
//!   connection that feeds it ([`Output::PauseRead`]) and resumes once the queue has drained
//!   to half the limit, so a fast sender into a slow receiver never grows memory past it.
//! - **Time** is only the `now` argument; every timeout is a deadline in the core's timer
//!   table, and [`Proxy::poll_timeout`] is the soonest of them.
//!
//! Workers share only a [`Shared`] (the stats store and its handles), built once per process.
//!
//! # A driver loop
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use burrow_core::{config::Config, Input, Output, Proxy, Shared};
//!
//! # fn wait_for_io(_deadline: Option<Instant>) -> Vec<Input> { Vec::new() }
//! # fn execute(_output: Output) {}
//! # fn clock() -> Instant { unimplemented!("the driver's monotonic clock") }
//! let config = Arc::new(Config::from_yaml(include_str!("../../configs/default.yaml")).unwrap());
//! let shared = Arc::new(Shared::new(&config));
//! let mut proxy = Proxy::new(config, shared, clock(), SystemTime::UNIX_EPOCH, 7);
//! while !proxy.is_finished() {
//!     while let Some(output) = proxy.poll_output() {
//!         execute(output); // bind, connect, write, shutdown, close, pause, resolve...
//!     }
//!     for input in wait_for_io(proxy.poll_timeout()) {
//!         proxy.handle(clock(), input);
//!     }
//!     if proxy.poll_timeout().is_some_and(|at| at <= clock()) {
//!         proxy.handle_timeout(clock());
//!     }
//! }
//! ```

mod access_log;
pub mod admin;
mod clock;
pub mod codec;
pub mod config;
mod downstream;
pub mod format;
mod io;
mod proxy;
mod shared;
pub mod stats;
mod tcp_proxy;
mod timers;
mod transport;
mod tunnel;
mod upstream;

pub use codec::http1;
pub use io::{CloseKind, CloseReason, ConnId, Input, ListenerId, Output, QueryId};
pub use proxy::Proxy;
pub use shared::Shared;
