//! burrow's core: every protocol decision of the proxy, with no IO of its own.
//!
//! See the crate README section "The core's contract" (filled in below) for the driver loop.

pub mod admin;
mod admin_conn;
mod clock;
mod cluster;
pub mod config;
pub mod http1;
mod http_conn;
mod io;
mod local_reply;
mod proxy;
mod route;
mod shared;
pub mod stats;
mod timers;
mod tunnel;

pub use io::{CloseKind, CloseReason, ConnId, Family, Input, ListenerId, Output, QueryId};
pub use proxy::Proxy;
pub use shared::Shared;
