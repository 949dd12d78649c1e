//! Codecs: bytes in, protocol events out, and back. They know nothing of routing or pools.

pub mod http1;
