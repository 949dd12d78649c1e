//! HTTP/2 through the `h2` crate, driven inside the core with no runtime: h2 runs over a
//! [`Pipe`] the codec fills with what the socket read and empties into writes, and is polled
//! with [flag wakers](wake) so that only the streams h2 woke are looked at again.
//!
//! The codec turns h2's handles into stream events (a request head, body pieces, the end, a
//! reset, room freed for the response) addressed by a stream key, and takes the response for
//! a key as head, data and end. It owns the flow control of both directions: request body
//! capacity is released for each piece taken unless the stream is paused (a paused stream's
//! window closes, the connection's others go on), and response bytes wait in a queue of the
//! stream's until h2 has capacity for them, so h2 never buffers more than a window.
//!
//! h2 reads the wall clock for one thing only: when a reset stream's id may be forgotten.

mod client;
mod pipe;
mod server;
mod stream;
mod wake;

pub(crate) use client::{ClientCodec, ClientEvent, ClientPolled, ClientSettings};
pub(crate) use server::{Polled, ServerCodec, ServerEvent, Settings};
