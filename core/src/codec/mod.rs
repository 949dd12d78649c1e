//! Codecs: bytes in, protocol events out, and back. They know nothing of routing or pools.

pub mod http1;

/// A response the proxy writes itself, as a value: the connection's codec encodes it (with
/// the `date`, `server` and connection fields its protocol needs), so the connection manager
/// never writes protocol bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalReply<'a> {
    pub(crate) status: u16,
    /// `content-type`, when there is one.
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
    /// Fields of the reply's own, after the standard ones.
    pub(crate) extra: &'a [(&'a str, &'a str)],
    /// Whether a `content-length` frames the body; not for the `200` that opens a tunnel,
    /// whose body is the tunnel.
    pub(crate) sized: bool,
}
