//! The in-memory duplex the `h2` crate runs over: the core puts the bytes a socket read into
//! it and takes out what h2 wrote, so h2 never sees a socket, a runtime or a timer.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One end is h2's transport, the other the codec's. Both live on one worker thread; the lock
/// is never contended and keeps the core `Send`.
#[derive(Clone, Default)]
pub(crate) struct Pipe(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    inbound: VecDeque<Bytes>,
    /// The peer sent its FIN: h2 reads end-of-file once `inbound` is empty.
    eof: bool,
    outbound: BytesMut,
    /// How much more h2 may write before the socket drains (the connection's buffer limit,
    /// less what is queued on the wire): a peer that does not read stops h2 writing, and so
    /// stops it reading more requests.
    room: usize,
}

impl Pipe {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes off the socket, for h2 to read.
    pub(crate) fn feed(&self, data: Bytes) {
        self.state().inbound.push_back(data);
    }

    pub(crate) fn feed_eof(&self) {
        self.state().eof = true;
    }

    pub(crate) fn set_room(&self, room: usize) {
        self.state().room = room;
    }

    /// What h2 wrote since the last call, as one piece.
    pub(crate) fn take_output(&self) -> Option<Bytes> {
        let mut state = self.state();
        (!state.outbound.is_empty()).then(|| state.outbound.split().freeze())
    }

    /// Nothing read is waiting for h2.
    pub(crate) fn drained(&self) -> bool {
        self.state().inbound.is_empty()
    }
}

impl AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state();
        let mut read = false;
        while buf.remaining() > 0 {
            let Some(front) = state.inbound.front_mut() else { break };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                state.inbound.pop_front();
            }
            read = true;
        }
        // Nothing to read and no FIN: the codec polls h2 again when bytes come.
        if read || state.eof {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_inner(&[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_inner(bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Pipe {
    fn poll_write_vectored_inner(&self, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut state = self.state();
        if state.room == 0 {
            return Poll::Pending;
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(state.room);
            state.outbound.extend_from_slice(&buf[..n]);
            state.room -= n;
            written += n;
            if n < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(written))
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn reads_what_was_fed_across_pieces_then_waits_then_ends_at_the_fin() {
        let pipe = Pipe::default();
        pipe.feed(Bytes::from_static(b"ab"));
        pipe.feed(Bytes::from_static(b"cde"));
        let mut reader = pipe.clone();
        let mut space = [0u8; 4];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut reader).poll_read(&mut cx(), &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abcd");
        let mut space = [0u8; 4];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut reader).poll_read(&mut cx(), &mut buf).is_ready());
        assert_eq!(buf.filled(), b"e");
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut reader).poll_read(&mut cx(), &mut buf).is_pending());
        pipe.feed_eof();
        assert!(Pin::new(&mut reader).poll_read(&mut cx(), &mut buf).is_ready());
        assert!(buf.filled().is_empty(), "end of file");
    }

    #[test]
    fn writes_stop_at_the_room_left() {
        let pipe = Pipe::default();
        pipe.set_room(3);
        let mut writer = pipe.clone();
        assert!(matches!(Pin::new(&mut writer).poll_write(&mut cx(), b"hello"), Poll::Ready(Ok(3))));
        assert!(Pin::new(&mut writer).poll_write(&mut cx(), b"lo").is_pending());
        assert_eq!(pipe.take_output().as_deref(), Some(&b"hel"[..]));
        assert_eq!(pipe.take_output(), None);
    }
}
