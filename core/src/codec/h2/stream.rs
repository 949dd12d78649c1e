//! One HTTP/2 stream's two halves as both codecs drive them: what is read (with the window
//! given back for each piece taken, unless the stream is paused) and what is sent (queued
//! until h2 has capacity, so h2 never buffers more than a window).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::wake::{Flag, Wakers};
use slab::Slab;

/// What a stream had for its codec when polled.
#[derive(Debug)]
pub(super) enum Io {
    Data(Bytes),
    /// The peer's END_STREAM (trailers are not forwarded).
    End,
    /// The peer reset the stream, or h2 did for an error on it.
    Reset(Reason),
    /// Queued bytes (or the END_STREAM) went to h2.
    Sent,
}

pub(super) enum Sending {
    /// A server's stream before its response head.
    Respond(SendResponse<Bytes>),
    Body(SendStream<Bytes>),
    Done,
}

pub(super) struct StreamIo {
    flag: Arc<Flag>,
    pub(super) waker: Waker,
    /// What the peer sends, until its end or a reset.
    pub(super) recv: Option<RecvStream>,
    /// Window is held back: the peer stops sending on this stream.
    paused: bool,
    /// Bytes taken and not yet given back to the window.
    unreleased: usize,
    pub(super) send: Sending,
    /// Bytes h2 has no capacity for yet.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// END_STREAM goes out after the queue.
    end: bool,
    /// Queued bytes went to h2 since the last `Sent` was reported: kept until it is, since
    /// bytes read in the same poll are reported first.
    sent: bool,
}

/// A codec's stream: its halves, and whatever else the codec keeps for it.
pub(super) trait Carries {
    fn io(&self) -> &StreamIo;
    fn io_mut(&mut self) -> &mut StreamIo;
    fn into_io(self) -> StreamIo;
}

/// A connection's streams under their keys, with the wakers that say which to poll next;
/// what both codecs do to a stream by its key.
pub(super) struct Streams<S> {
    slab: Slab<S>,
    wakers: Wakers,
    /// Streams to poll: woken by h2, or with more to give since their last event.
    due: Vec<usize>,
}

impl<S: Carries> Streams<S> {
    pub(super) fn new() -> Streams<S> {
        Streams { slab: Slab::new(), wakers: Wakers::default(), due: Vec::new() }
    }

    /// A new stream, made around halves under its key (polled first thing).
    pub(super) fn insert(
        &mut self,
        recv: Option<RecvStream>,
        send: Sending,
        make: impl FnOnce(StreamIo) -> S,
    ) -> usize {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        entry.insert(make(StreamIo::new(&mut self.wakers, key, recv, send)));
        key
    }

    pub(super) fn get(&self, key: usize) -> Option<&S> {
        self.slab.get(key)
    }

    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut S> {
        self.slab.get_mut(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The next stream to poll, if one is due (or was woken since).
    pub(super) fn next_due(&mut self) -> Option<usize> {
        if self.due.is_empty() {
            self.wakers.woken().take(&mut self.due);
        }
        self.due.pop()
    }

    /// The stream just polled may have more: it is polled again next.
    pub(super) fn again(&mut self, key: usize) {
        self.due.push(key);
    }

    /// Every stream is polled again (its connection ended: what h2 holds for each comes out).
    pub(super) fn all_due(&mut self) {
        self.due.extend(self.slab.iter().map(|(key, _)| key));
    }

    /// Whether a stream was woken while the connection was polled.
    pub(super) fn woken(&mut self) -> bool {
        self.wakers.woken().take(&mut self.due);
        !self.due.is_empty()
    }

    pub(super) fn pause(&mut self, key: usize) {
        if let Some(stream) = self.slab.get_mut(key) {
            stream.io_mut().pause();
        }
    }

    pub(super) fn resume(&mut self, key: usize) {
        if let Some(stream) = self.slab.get_mut(key) {
            stream.io_mut().resume();
        }
    }

    pub(super) fn send_data(&mut self, key: usize, data: Bytes) {
        if let Some(stream) = self.slab.get_mut(key) {
            stream.io_mut().send_data(data);
        }
    }

    pub(super) fn send_end(&mut self, key: usize) {
        if let Some(stream) = self.slab.get_mut(key) {
            stream.io_mut().send_end();
        }
    }

    pub(super) fn queued(&self, key: usize) -> usize {
        self.slab.get(key).map_or(0, |s| s.io().queued())
    }

    pub(super) fn reset(&mut self, key: usize, reason: Reason) {
        if let Some(stream) = self.slab.get_mut(key) {
            stream.io_mut().reset(reason);
        }
    }

    /// The stream is forgotten (its waker kept for a later one).
    pub(super) fn remove(&mut self, key: usize) {
        if self.slab.contains(key) {
            self.slab.remove(key).into_io().retire(&mut self.wakers);
        }
    }
}

impl StreamIo {
    /// A stream under `key`, polled first thing (its waker is born woken).
    fn new(wakers: &mut Wakers, key: usize, recv: Option<RecvStream>, send: Sending) -> StreamIo {
        let (flag, waker) = wakers.get(key);
        StreamIo {
            flag,
            waker,
            recv,
            paused: false,
            unreleased: 0,
            send,
            queue: VecDeque::new(),
            queued: 0,
            end: false,
            sent: false,
        }
    }

    /// The stream is gone: its waker goes back for a later one.
    fn retire(mut self, wakers: &mut Wakers) {
        self.give_back();
        let StreamIo { flag, waker, .. } = self;
        drop(waker);
        wakers.put(flag);
    }

    /// About to be polled: a wake from now on files it again.
    pub(super) fn clear(&self) {
        self.flag.clear();
    }

    /// The next thing the stream has: a reset, bytes read, their end, or room freed.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Option<Io> {
        let reset = match &mut self.send {
            Sending::Respond(respond) => respond.poll_reset(cx),
            Sending::Body(body) => body.poll_reset(cx),
            Sending::Done => Poll::Pending,
        };
        if let Poll::Ready(reset) = reset {
            self.give_back();
            self.recv = None;
            self.send = Sending::Done;
            return Some(Io::Reset(reset.unwrap_or(Reason::CANCEL)));
        }
        self.sent |= self.pump(cx);
        if !self.paused {
            self.give_back();
            if let Some(recv) = &mut self.recv {
                loop {
                    match recv.poll_data(cx) {
                        Poll::Ready(Some(Ok(data))) if data.is_empty() => continue,
                        Poll::Ready(Some(Ok(data))) => {
                            self.unreleased += data.len();
                            return Some(Io::Data(data));
                        }
                        Poll::Ready(Some(Err(error))) => {
                            self.recv = None;
                            return Some(Io::Reset(error.reason().unwrap_or(Reason::CANCEL)));
                        }
                        Poll::Ready(None) => {
                            self.recv = None;
                            return Some(Io::End);
                        }
                        Poll::Pending => break,
                    }
                }
            }
        }
        std::mem::take(&mut self.sent).then_some(Io::Sent)
    }

    /// Stops giving the window back.
    fn pause(&mut self) {
        self.paused = true;
    }

    /// Gives the window back again (and reads what waited).
    fn resume(&mut self) {
        if std::mem::take(&mut self.paused) {
            self.waker.wake_by_ref();
        }
    }

    /// Bytes to send, as the window allows.
    fn send_data(&mut self, data: Bytes) {
        if data.is_empty() || matches!(self.send, Sending::Done) {
            return;
        }
        self.queued += data.len();
        self.queue.push_back(data);
        self.waker.wake_by_ref();
    }

    /// END_STREAM once what is queued has gone.
    fn send_end(&mut self) {
        self.end = true;
        self.waker.wake_by_ref();
    }

    /// Bytes waiting for h2's capacity.
    fn queued(&self) -> usize {
        self.queued
    }

    /// Nothing more goes out on the stream (its end went, or it was reset).
    pub(super) fn send_done(&self) -> bool {
        matches!(self.send, Sending::Done)
    }

    /// RST_STREAM with `reason`; nothing more is sent or read.
    pub(super) fn reset(&mut self, reason: Reason) {
        match std::mem::replace(&mut self.send, Sending::Done) {
            Sending::Respond(mut respond) => respond.send_reset(reason),
            Sending::Body(mut body) => body.send_reset(reason),
            Sending::Done => {}
        }
        self.give_back();
        self.recv = None;
        self.queue.clear();
        self.queued = 0;
    }

    /// Gives the bytes taken back to the stream's and the connection's windows.
    fn give_back(&mut self) {
        if let Some(recv) = &mut self.recv {
            if self.unreleased > 0 {
                let _ = recv.flow_control().release_capacity(self.unreleased);
            }
        }
        self.unreleased = 0;
    }

    /// Hands queued bytes to h2 as far as its capacity goes; true if any went.
    fn pump(&mut self, cx: &mut Context<'_>) -> bool {
        let Sending::Body(body) = &mut self.send else { return false };
        let mut sent = false;
        loop {
            if self.queue.is_empty() {
                if self.end {
                    let _ = body.send_data(Bytes::new(), true);
                    self.send = Sending::Done;
                    return true;
                }
                return sent;
            }
            body.reserve_capacity(self.queued);
            let capacity = body.capacity();
            if capacity == 0 {
                match body.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Pending => return sent,
                    Poll::Ready(None | Some(Err(_))) => {
                        self.queue.clear();
                        self.queued = 0;
                        self.send = Sending::Done;
                        return sent;
                    }
                }
            }
            let piece = next_piece(&mut self.queue, self.queued, capacity);
            self.queued -= piece.len();
            let last = self.end && self.queue.is_empty();
            sent = true;
            if body.send_data(piece, last).is_err() || last {
                self.queue.clear();
                self.queued = 0;
                self.send = Sending::Done;
                return sent;
            }
        }
    }
}

/// The next DATA frame's payload, at most `capacity` bytes. Small pieces queued together
/// (tiny reads from a peer while the window was shut) go as one frame: many tiny frames
/// cost the peer framing work, and h2 peers cut off a connection that sends too many.
/// A large piece goes as it is, never copied.
fn next_piece(queue: &mut VecDeque<Bytes>, queued: usize, capacity: usize) -> Bytes {
    const SMALL: usize = 4096;
    let front = queue.front_mut().expect("not empty");
    if front.len() > capacity {
        return front.split_to(capacity);
    }
    if front.len() >= SMALL || queue.len() == 1 {
        return queue.pop_front().expect("not empty");
    }
    let mut frame = BytesMut::with_capacity(capacity.min(queued));
    while let Some(front) = queue.front_mut() {
        let room = capacity - frame.len();
        if room == 0 {
            break;
        }
        if front.len() <= room {
            frame.extend_from_slice(&queue.pop_front().expect("not empty"));
        } else {
            frame.extend_from_slice(&front.split_to(room));
        }
    }
    frame.freeze()
}
