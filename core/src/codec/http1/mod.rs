//! HTTP/1.1 codec: bytes in, heads and body pieces out; heads and chunk frames back to bytes.
//!
//! Pure functions and small state machines, no IO:
//! - [`parse_request_head`] / [`parse_response_head`]: restartable head parsing (`httparse`) with
//!   Envoy's limits, into owned [`RequestHead`] / [`ResponseHead`];
//! - [`request_body`] / [`response_body`]: the RFC 9112 framing decision ([`BodyKind`]),
//!   refusing the shapes that enable request smuggling;
//! - [`BodyDecoder`]: the body as zero-copy slices of the read buffer; [`encode_chunk`] and
//!   [`last_chunk`] frame a body for sending without copying it;
//! - `server::ServerCodec`: a downstream connection's requests in and responses out;
//! - [`HeadWriter`] (with [`write_request_head`] / [`write_response_head`] over it): the one
//!   serialization of heads as HTTP/1.1.
//!
//! A refusal is a [`HeadError`], which knows Envoy's status code and details string for the
//! local reply.

mod body;
mod error;
mod framing;
mod fuzz;
mod head;
mod parse;
pub(crate) mod response;
pub(crate) mod server;
mod write;

pub use body::{encode_chunk, last_chunk, BodyDecoder, Decoded, MAX_CHUNK_LINE, MAX_TRAILER_BYTES};
pub use error::HeadError;
pub use framing::{request_body, response_body, BodyKind};
pub use fuzz::fuzz_request_head;
pub use head::{Headers, Method, RequestHead, ResponseHead, Version};
pub use parse::{parse_request_head, parse_response_head, Limits};
pub(crate) use write::encode_reply;
pub use write::{reason_phrase, write_request_head, write_response_head, HeadWriter};
